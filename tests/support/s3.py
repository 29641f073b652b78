"""Real servers on 127.0.0.1 for the remote tests: moto (with SigV4 auth on), test data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ocog_lib.remote.endpoint import ENDPOINT_VARS, stop_embedded
from ocog_lib.remote.s3server import EmbeddedS3
from ocog_lib.settings import Settings
from tests.support.rasters import real_pixels, write_raster

BUCKET = "ocog-test"


@dataclass(frozen=True)
class Objects:
    blob: Path  # 3 MB of random bytes
    blob_uri: str
    cog: Path  # a real 4-band uint16 COG, 512 px, 128 px tiles, DEFLATE + predictor
    cog_uri: str


@pytest.fixture(scope="session")
def s3() -> EmbeddedS3:
    """One moto server for the module's tests, SigV4 checks on; stopped by PID at the end."""
    server = EmbeddedS3().start()
    try:
        server.ensure_bucket(BUCKET)
        server.enable_auth()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def objects(s3: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory) -> Objects:
    root = tmp_path_factory.mktemp("remote")
    blob = root / "blob.bin"
    blob.write_bytes(np.random.default_rng(7).integers(0, 256, 3 << 20, np.uint8).tobytes())
    cog = write_raster(
        root / "scene.tif",
        real_pixels(4, 512, 512, "uint16"),
        compress="DEFLATE",
        predictor=2,
        blocksize=128,
    )
    client = s3.client()
    client.upload_file(str(blob), BUCKET, "data/blob.bin")
    client.upload_file(str(cog), BUCKET, "data/scene.tif")
    return Objects(blob, f"s3://{BUCKET}/data/blob.bin", cog, f"s3://{BUCKET}/data/scene.tif")


@pytest.fixture
def s3_env(s3: EmbeddedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment pointing S3 clients at the embedded server."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    env = s3.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def local_bytes(path: Path, offset: int = 0, length: int | None = None) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(-1 if length is None else length)


CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                   "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE")  # fmt: skip


@pytest.fixture
def endpoint_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A data folder of its own, no endpoint and no AWS credentials configured; any
    embedded server started for it is stopped at the end."""
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    for var in (*ENDPOINT_VARS, *CREDENTIAL_VARS, "OCOG_S3_BUCKET", "OCOG_S3_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    settings = Settings.from_env()
    yield settings
    stop_embedded(settings)
