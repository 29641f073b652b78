"""One key layout and one embedded endpoint: a session reuses the long-lived server when
it runs, starts (and stops) its own only when nothing else is there."""

from __future__ import annotations

from pathlib import Path

from ocog_lib.remote.endpoint import embedded_status, resolve_endpoint
from ocog_lib.remote.session import remote_session, variant_key, variant_uri
from ocog_lib.settings import Settings
from tests.support.processes import alive


def _variant(settings: Settings, dataset: str = "sample", variant: str = "default") -> list[str]:
    folder = settings.variant_dir(dataset, variant)
    (folder / "images").mkdir(parents=True)
    paths = [folder / "images" / "a.tif", folder / "manifest.json"]
    for i, p in enumerate(paths):
        p.write_bytes(bytes([i]) * (1000 + i))
    return [str(p) for p in paths]


def _keys(client, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_the_layout_is_variants_dataset_variant_relpath():
    assert variant_key("dfc22", "optimal_local", "images/x.tif") == (
        "variants/dfc22/optimal_local/images/x.tif"
    )
    assert variant_uri("ocog", "sample", "default") == "s3://ocog/variants/sample/default/"


def test_without_a_running_server_a_session_starts_its_own_and_stops_it(endpoint_settings):
    paths = _variant(endpoint_settings)
    with remote_session(endpoint_settings) as session:
        assert session.own_server and session.bucket == "ocog"
        pid = session.endpoint.pid
        uris = session.upload_variant_files(
            "sample", "default", endpoint_settings.variant_dir("sample", "default"), paths
        )
        assert uris == [
            "s3://ocog/variants/sample/default/images/a.tif",
            "s3://ocog/variants/sample/default/manifest.json",
        ]
        assert _keys(session.client, "ocog") == [u.removeprefix("s3://ocog/") for u in uris]
        assert embedded_status(endpoint_settings) is None  # no long-lived server was started
    assert not alive(pid)


def test_a_session_reuses_the_long_lived_embedded_server(endpoint_settings):
    paths = _variant(endpoint_settings)
    served = resolve_endpoint(endpoint_settings)  # what `ocog s3 serve` / ObjectStore start
    client = served.client()
    key = variant_key("sample", "default", "manifest.json")
    client.put_object(Bucket=served.bucket, Key=key, Body=Path(paths[1]).read_bytes())
    with remote_session(endpoint_settings) as session:
        assert not session.own_server
        assert (session.endpoint.url, session.endpoint.pid) == (served.url, served.pid)
        # the object the long-lived server holds is the one the session reads
        assert key in _keys(session.client, session.bucket)
        session.upload_variant_files(
            "sample", "default", endpoint_settings.variant_dir("sample", "default"), paths
        )
    assert alive(served.pid)  # the session leaves the shared server running
    assert variant_key("sample", "default", "images/a.tif") in _keys(client, served.bucket)


def test_env_points_readers_at_a_front_or_the_endpoint(endpoint_settings):
    with remote_session(endpoint_settings) as session:
        direct = session.env()
        front = session.env("http://127.0.0.1:1")
    assert direct["AWS_ENDPOINT_URL_S3"] == session.endpoint.url
    assert front["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:1"
    assert front["AWS_S3_ENDPOINT"] == "127.0.0.1:1" and front["AWS_HTTPS"] == "NO"
