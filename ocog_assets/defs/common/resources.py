"""Resources every domain shares: where files live (OcogPaths), the DuckDB results file
(ResultsStore) and object storage (ObjectStore).

ObjectStore is dagster-aws's S3Resource, pointed at ocog's endpoint once it is known. A
configured endpoint (OCOG_S3_ENDPOINT / AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL) goes into
the S3Resource as an EnvVar, visible in the UI. Without one, ocog's embedded S3 server is
the endpoint, and its URL exists only once it runs: the wrapper resolves it at run time
(starting the server if needed) and hands out the S3Resource pointed there. The key layout
is ocog_lib.remote.session's, the one every reader of a remote variant uses.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_aws.s3 import S3Resource

from ocog_assets.defs.common.io_managers import OcogValueIOManager
from ocog_lib import results
from ocog_lib.errors import InputError
from ocog_lib.remote.endpoint import (
    BUCKET_VAR,
    ENDPOINT_VARS,
    Endpoint,
    bucket_from_env,
    resolve_endpoint,
)
from ocog_lib.remote.session import VARIANTS_PREFIX, variant_uri
from ocog_lib.settings import Settings


class OcogPaths(dg.ConfigurableResource):
    """Data folder and results file; unset fields fall back to Settings.from_env() at run time."""

    data_dir: str | None = None
    results_db: str | None = None

    def settings(self) -> Settings:
        env = Settings.from_env()
        data_dir = Path(self.data_dir).resolve() if self.data_dir else env.data_dir
        if self.results_db:
            db = Path(self.results_db).resolve()
        elif self.data_dir and not os.environ.get("OCOG_DUCKDB"):
            db = data_dir / "ocog.duckdb"
        else:
            db = env.results_db
        return Settings(data_dir=data_dir, results_db=db)


class ResultsStore(dg.ConfigurableResource):
    """The one writer path into DuckDB; assets that write use the `duckdb_writer` pool."""

    paths: OcogPaths

    @property
    def db_path(self) -> Path:
        return self.paths.settings().results_db

    def write_rows(self, table: str, rows: Sequence[dict[str, Any]], *,
                   replace_where: dict[str, Any] | None = None) -> int:
        return results.write_rows(self.db_path, table, rows, replace_where=replace_where)

    def query(self, sql: str, params: Sequence[Any] | None = None
              ) -> tuple[list[str], list[tuple]]:
        return results.query(self.db_path, sql, params)


class ObjectStore(dg.ConfigurableResource):
    """Where ocog keeps objects: `s3://<bucket>/variants/<dataset>/<variant>/<file>`.

    `s3.endpoint_url` unset means ocog's embedded endpoint (objects in its memory: after
    it stops, uploads must run again). `bucket` unset means $OCOG_S3_BUCKET or "ocog".
    `prefix` can only be "variants": remote search, training and `bench compare --remote`
    read there (ocog_lib.remote.session owns the layout).
    """

    paths: OcogPaths
    s3: S3Resource
    bucket: str | None = None
    prefix: str = VARIANTS_PREFIX

    def endpoint(self) -> Endpoint:
        """The resolved endpoint; starts the embedded server if it is the one and is down."""
        endpoint = resolve_endpoint(
            self.paths.settings(), url=self.s3.endpoint_url or None, bucket=self.bucket or None
        )
        if not endpoint.embedded and self.s3.region_name:
            endpoint = replace(endpoint, region=self.s3.region_name)
        return endpoint

    def uri_for(self, dataset: str, variant: str, relpath: str = "") -> str:
        """The object (or, with no relpath, the folder ending in "/") of a variant's file."""
        if self.prefix.strip("/") != VARIANTS_PREFIX:
            raise InputError(f"object_store prefix {self.prefix!r}",
                             f"variants live under {VARIANTS_PREFIX!r}, where every reader "
                             "(remote search, training, bench compare --remote) looks")
        return variant_uri(self.bucket or bucket_from_env(), dataset, variant, relpath)

    def s3_resource(self, endpoint: Endpoint | None = None) -> S3Resource:
        """The S3Resource with the endpoint filled in (and the embedded server's dummy
        credentials where no AWS credentials are configured anywhere)."""
        endpoint = endpoint or self.endpoint()
        update: dict[str, Any] = {"endpoint_url": endpoint.url}
        if endpoint.region and not self.s3.region_name:
            update["region_name"] = endpoint.region
        opts = endpoint.client_opts()
        if "aws_access_key_id" in opts and not (self.s3.aws_access_key_id or self.s3.profile_name):
            update["aws_access_key_id"] = opts["aws_access_key_id"]
            update["aws_secret_access_key"] = opts["aws_secret_access_key"]
        return self.s3.model_copy(update=update)

    def client(self, endpoint: Endpoint | None = None) -> Any:
        """A boto3 S3 client made by dagster-aws's S3Resource."""
        return self.s3_resource(endpoint).get_client()

    def client_opts(self, endpoint: Endpoint | None = None) -> dict[str, Any]:
        """The same settings as boto3.client keywords, for ocog_lib (e.g. `upload_dir`).
        A profile's credentials are resolved here, held in memory only."""
        s3 = self.s3_resource(endpoint)
        opts: dict[str, Any] = {"endpoint_url": s3.endpoint_url}
        if s3.region_name:
            opts["region_name"] = s3.region_name
        if s3.verify is not None:
            opts["verify"] = s3.verify
        if not s3.use_ssl:
            opts["use_ssl"] = False
        keys = (s3.aws_access_key_id, s3.aws_secret_access_key, s3.aws_session_token)
        if s3.profile_name and not s3.aws_access_key_id:
            import boto3

            frozen = boto3.session.Session(profile_name=s3.profile_name).get_credentials()
            frozen = frozen.get_frozen_credentials() if frozen is not None else None
            keys = (frozen.access_key, frozen.secret_key, frozen.token) if frozen else keys
        names = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        opts.update({name: value for name, value in zip(names, keys, strict=True) if value})
        return opts


def _first_set(names: tuple[str, ...]) -> dg.EnvVar | None:
    """EnvVar for the first variable set (shown as such in the UI), else None (the default)."""
    for name in names:
        if os.environ.get(name):
            return dg.EnvVar(name)
    return None


def object_store_from_env(paths: OcogPaths) -> ObjectStore:
    """The resource as the code location builds it: EnvVars for what the environment sets."""
    s3 = S3Resource(
        endpoint_url=_first_set(ENDPOINT_VARS),
        region_name=_first_set(("AWS_REGION", "AWS_DEFAULT_REGION")),
    )
    return ObjectStore(paths=paths, s3=s3, bucket=_first_set((BUCKET_VAR,)))


def default_resources() -> dict[str, dg.ConfigurableResource | dg.ConfigurableIOManagerFactory]:
    paths = OcogPaths(data_dir=_first_set(("OCOG_DATA_DIR",)),
                      results_db=_first_set(("OCOG_DUCKDB",)))
    # "io_manager" replaces Dagster's default, which set `path` to its pickle (io_managers.py)
    return {"paths": paths, "results": ResultsStore(paths=paths),
            "object_store": object_store_from_env(paths), "io_manager": OcogValueIOManager()}
