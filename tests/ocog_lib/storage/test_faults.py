"""Real failures, met for real: HTTP 5xx from a fault front, resets, short bodies and
stalls from the shaper. The source retries, gives the right bytes or a clear error
naming the object, and never waits past its deadline."""

from __future__ import annotations

import pytest

from ocog_lib.errors import InputError
from ocog_lib.remote.shaper import Fault, Shaper
from ocog_lib.storage import RemoteOptions, S3Object
from tests.support.faults import FaultFront
from tests.support.s3 import local_bytes

QUICK = RemoteOptions(attempts=4, backoff_s=0.01, deadline_s=20)


def test_5xx_are_retried_then_the_bytes_are_right(s3, s3_env, objects):
    with FaultFront(s3.endpoint_url, [503, 500, 503]) as front:
        src = S3Object(objects.blob_uri, endpoint_url=front.url, options=QUICK)
        assert src.read(1000, 200_000) == local_bytes(objects.blob, 1000, 200_000)
        assert (front.faulted, front.forwarded) == (3, 1)
    stats = src.stats()
    assert (stats.requests, stats.retries, stats.failures) == (4, 3, 0)


def test_persistent_5xx_gives_up_naming_object_and_status(s3, s3_env, objects):
    with FaultFront(s3.endpoint_url, [503] * 10) as front:
        src = S3Object(objects.blob_uri, endpoint_url=front.url, options=QUICK)
        with pytest.raises(InputError) as err:
            src.read(0, 100)
    assert err.value.what == objects.blob_uri
    assert "after 4 attempt(s)" in err.value.cause and "HTTP 503 (SlowDown" in err.value.cause
    assert src.stats().retries == 3 and src.stats().failures == 1


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_bodies_are_retried_never_returned_short(s3, s3_env, objects, kind):
    fault = Fault(kind, after_bytes=20_000, count=2)
    with Shaper("127.0.0.1", s3.port, rtt_ms=0, cap_mb_s=None, fault=fault) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url, options=QUICK)
        assert src.read(5, 400_000) == local_bytes(objects.blob, 5, 400_000)
    stats = src.stats()
    assert stats.retries == 2 and stats.failures == 0
    assert stats.bytes > 400_000  # the broken attempts' bytes were on the wire too


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_broken_bodies_beyond_the_attempts_fail_clearly(s3, s3_env, objects, kind):
    fault = Fault(kind, after_bytes=20_000, count=100)
    with Shaper("127.0.0.1", s3.port, rtt_ms=0, cap_mb_s=None, fault=fault) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url, options=QUICK)
        with pytest.raises(InputError) as err:
            src.read(0, 400_000)
    assert err.value.what == objects.blob_uri
    assert "after 4 attempt(s)" in err.value.cause
    assert "connection broke" in err.value.cause or "truncated body" in err.value.cause


def test_a_stalled_response_ends_within_the_deadline(s3, s3_env, objects):
    options = RemoteOptions(attempts=10, backoff_s=0.01, read_timeout_s=0.5, deadline_s=2.0)
    fault = Fault("stall", after_bytes=20_000, count=100)
    with Shaper("127.0.0.1", s3.port, rtt_ms=0, cap_mb_s=None, fault=fault) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url, options=options)
        with pytest.raises(InputError) as err:
            src.read(0, 400_000)
    assert "deadline 2 s" in err.value.cause
    # the deadline, not the attempt budget, ended it: a stall never runs out the retries
    assert src.stats().retries < options.attempts - 1


def test_a_stall_once_is_survived(s3, s3_env, objects):
    options = RemoteOptions(attempts=3, backoff_s=0.01, read_timeout_s=0.5, deadline_s=10)
    fault = Fault("stall", after_bytes=20_000, count=1)
    with Shaper("127.0.0.1", s3.port, rtt_ms=0, cap_mb_s=None, fault=fault) as shaper:
        src = S3Object(objects.blob_uri, endpoint_url=shaper.url, options=options)
        assert src.read(0, 400_000) == local_bytes(objects.blob, 0, 400_000)
    assert src.stats().retries == 1
