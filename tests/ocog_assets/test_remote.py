"""remote_variants in-process on a real Dagster instance, against real S3 servers on
127.0.0.1: the embedded default endpoint (started by the run, stopped by PID here) and a
configured one; and the library's remote sessions reading what it uploaded."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from ocog_assets import definitions
from ocog_assets.defs.common.resources import (
    ObjectStore,
    OcogPaths,
    default_resources,
    object_store_from_env,
)
from ocog_assets.defs.remote.assets import ENDPOINT_TAG, remote_variants
from ocog_assets.defs.variants.assets import cog_variants
from ocog_lib.remote.endpoint import ENDPOINT_VARS, embedded_status, stop_embedded
from ocog_lib.remote.s3server import EmbeddedS3
from ocog_lib.remote.session import remote_session, variant_key
from ocog_lib.settings import Settings
from tests.support.s3 import CREDENTIAL_VARS
from tests.support.variants import prepared_with_default_variant

KEY = dg.MultiPartitionKey({"dataset": "sample", "variant": "default"})


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No endpoint, bucket or AWS credentials from the machine running the tests."""
    for var in (*ENDPOINT_VARS, *CREDENTIAL_VARS, "OCOG_S3_BUCKET", "OCOG_S3_PORT", "AWS_REGION",
                "AWS_DEFAULT_REGION"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))


@pytest.fixture(scope="module")
def variant_data(tiny_sample, tmp_path_factory) -> Settings:
    """A data folder holding the sample's `default` variant, written by the library."""
    return prepared_with_default_variant(tiny_sample, tmp_path_factory.mktemp("remote_data"))


def _local_files(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in folder.rglob("*") if p.is_file()}  # fmt: skip


def _listed(client, bucket: str, prefix: str) -> dict[str, int]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"][len(prefix):]: o["Size"] for o in listed}  # fmt: skip


def _materialize(settings: Settings, store: ObjectStore, key=KEY) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            [remote_variants],
            partition_key=str(key),
            instance=instance,
            resources={"paths": store.paths, "object_store": store},
            raise_on_error=False,
        )


def _materialization(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    assert result.success, result.get_step_failure_events()
    (event,) = result.asset_materializations_for_node("remote_variants")
    return event


def test_the_asset_and_its_resource_are_in_the_code_location(clean_env, monkeypatch):
    graph = definitions.defs.resolve_asset_graph()
    assert graph.get(remote_variants.key).parent_keys == {cog_variants.key}
    assert isinstance(default_resources()["object_store"], ObjectStore)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://minio.local:9000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("OCOG_S3_BUCKET", "team-bucket")
    store = object_store_from_env(OcogPaths())
    # EnvVars (shown as such in the UI), resolved when a run starts
    assert isinstance(store.s3.endpoint_url, dg.EnvVar)
    assert store.s3.endpoint_url.env_var_name == "AWS_ENDPOINT_URL_S3"
    assert store.s3.region_name.env_var_name == "AWS_DEFAULT_REGION"
    assert store.bucket.env_var_name == "OCOG_S3_BUCKET"


def test_upload_to_the_embedded_default_then_skip(clean_env, variant_data):
    settings = variant_data
    store = ObjectStore(paths=OcogPaths(data_dir=str(settings.data_dir)), s3=S3Resource())
    folder = settings.variant_dir("sample", "default")
    local = _local_files(folder)
    assert "manifest.json" in local and len(local) >= 3
    try:
        first = _materialization(_materialize(settings, store))
        meta = first.metadata
        state = embedded_status(settings)
        assert state is not None  # the run started it; it outlives the run
        assert meta["embedded"].value and first.tags[ENDPOINT_TAG] == "embedded"
        assert meta["endpoint"].value == state.url and meta["embedded_pid"].value == state.pid
        assert meta["bucket"].value == "ocog"
        assert meta["prefix"].value == "s3://ocog/variants/sample/default/"
        assert meta["files"].value == meta["files_uploaded"].value == len(local)
        assert meta["files_skipped"].value == 0
        assert meta["bytes"].value == meta["bytes_uploaded"].value == sum(local.values())
        assert "AWS_ACCESS_KEY_ID" not in os.environ  # dummy keys went to our clients only

        # a plain boto3 client of its own (moto takes any key)
        client = boto3.client("s3", endpoint_url=state.url, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")  # fmt: skip
        assert _listed(client, "ocog", "variants/sample/default/") == local
        assert store.uri_for("sample", "default", "manifest.json") == (
            "s3://ocog/variants/sample/default/manifest.json"
        )

        again = _materialization(_materialize(settings, store)).metadata
        assert again["files_skipped"].value == len(local)
        assert again["files_uploaded"].value == again["bytes_uploaded"].value == 0
        assert again["embedded_pid"].value == state.pid  # the running server was reused
    finally:
        pid = stop_embedded(settings)
    assert pid is not None and embedded_status(settings) is None
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_upload_to_a_configured_endpoint(clean_env, variant_data, tmp_path):
    settings = variant_data
    folder = settings.variant_dir("sample", "default")
    local = _local_files(folder)
    with EmbeddedS3() as server:
        server.ensure_bucket("team-bucket")
        s3 = S3Resource(
            endpoint_url=server.endpoint_url,
            region_name=server.region,
            aws_access_key_id=server.access_key,
            aws_secret_access_key=server.secret_key,
        )
        paths = OcogPaths(data_dir=str(settings.data_dir))
        # another prefix would upload where no reader looks: refused, nothing uploaded
        elsewhere = ObjectStore(paths=paths, s3=s3, bucket="team-bucket", prefix="cogs")
        (failure,) = _materialize(settings, elsewhere).get_step_failure_events()
        message = failure.step_failure_data.error.to_string()
        assert "prefix 'cogs'" in message and "variants" in message
        assert _listed(server.client(), "team-bucket", "") == {}

        store = ObjectStore(paths=paths, s3=s3, bucket="team-bucket")
        event = _materialization(_materialize(settings, store))
        assert not event.metadata["embedded"].value and event.tags[ENDPOINT_TAG] == "configured"
        assert event.metadata["prefix"].value == "s3://team-bucket/variants/sample/default/"
        assert _listed(server.client(), "team-bucket", "variants/sample/default/") == local
    assert embedded_status(settings) is None  # nothing embedded was started


def test_a_remote_session_reuses_the_embedded_server_and_its_objects(clean_env, variant_data):
    """Remote search, training and `bench compare --remote` open a remote_session: with the
    long-lived embedded server up (here started by remote_variants), they use it and find
    the asset's uploads under the one key layout, instead of starting a server and
    uploading again."""
    settings = variant_data
    store = ObjectStore(paths=OcogPaths(data_dir=str(settings.data_dir)), s3=S3Resource())
    local = _local_files(settings.variant_dir("sample", "default"))
    try:
        meta = _materialization(_materialize(settings, store)).metadata
        state = embedded_status(settings)
        assert state is not None
        with remote_session(settings) as session:
            assert not session.own_server
            assert session.endpoint.embedded
            assert (session.endpoint.url, session.endpoint.pid) == (state.url, state.pid)
            assert session.variant_uri("sample", "default") == meta["prefix"].value
            listed = _listed(session.client, session.bucket, variant_key("sample", "default"))
            assert listed == local
        assert embedded_status(settings) == state  # the session left the server running
    finally:
        stop_embedded(settings)


def test_a_missing_variant_folder_names_the_asset_to_run_first(clean_env, tmp_path):
    store = ObjectStore(paths=OcogPaths(data_dir=str(tmp_path / "empty")), s3=S3Resource())
    settings = store.paths.settings()
    key = dg.MultiPartitionKey({"dataset": "sample", "variant": "optimal_remote"})
    result = _materialize(settings, store, key)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    message = failure.step_failure_data.error.to_string()
    assert str(settings.variant_dir("sample", "optimal_remote")) in message
    assert "materialize cog_variants[sample|optimal_remote] first" in message
    assert embedded_status(settings) is None  # failed before touching any endpoint
