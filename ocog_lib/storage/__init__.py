"""URIs to byte-range readers.

The engine never opens a dataset per sample: it asks a `ByteSource` for byte ranges.
A source is picklable and opens its handle lazily in the process that reads, so no file
descriptor or connection ever crosses a fork (DataLoader workers, spawn or fork).
Local paths are read with `os.pread` (releases the GIL). `s3://` and `http(s)://`
objects are read with ranged GETs over one urllib3 pool per process, shared by every
source and safe for many reader threads at once; S3 requests are signed with SigV4 by
botocore, so any S3-compatible endpoint works. Remote reads retry what a retry can fix
(5xx, throttling, resets, timeouts, short bodies) with backoff and jitter inside a
stated deadline, fail at once on what it cannot (401/403, 404, 416, an object changed
under us), and never return bytes other than the ones asked for.

Modules: `ranges` (ByteRange, merge_ranges), `source` (the ByteSource base), `local`
(LocalFile), `http` (retries and deadlines, HttpObject, SAS), `s3` (S3Object, SigV4),
`uri` (open_source). Import from here.
"""

from ocog_lib.storage.http import HttpObject, RemoteOptions, sas_from_env, with_sas
from ocog_lib.storage.local import LocalFile
from ocog_lib.storage.ranges import ByteRange, merge_ranges
from ocog_lib.storage.s3 import S3Object, parse_s3_uri, s3_endpoint_from_env
from ocog_lib.storage.source import ByteSource, TransferStats
from ocog_lib.storage.uri import open_source

__all__ = [
    "ByteRange",
    "ByteSource",
    "HttpObject",
    "LocalFile",
    "RemoteOptions",
    "S3Object",
    "TransferStats",
    "merge_ranges",
    "open_source",
    "parse_s3_uri",
    "s3_endpoint_from_env",
    "sas_from_env",
    "with_sas",
]
