import pytest

from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.train.store import LocalModelStore, S3ModelStore, model_store


def test_local_store_round_trip(tmp_path):
    src = tmp_path / "m.pt"
    src.write_bytes(b"weights" * 100)
    store = model_store(tmp_path / "models")
    uri = store.save(src, "sample/local-default/run1.pt")
    assert uri == str(tmp_path / "models" / "sample/local-default/run1.pt")
    out = store.fetch("sample/local-default/run1.pt", tmp_path / "back.pt")
    assert out.read_bytes() == src.read_bytes()
    assert not [p for p in (tmp_path / "models").rglob(".*.tmp")]


def test_store_uris_and_bad_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("OCOG_MODEL_STORE", raising=False)
    s = Settings(data_dir=tmp_path, results_db=tmp_path / "x.duckdb")
    assert model_store(settings=s) == LocalModelStore(tmp_path / "models")
    assert model_store("s3://bucket/some/prefix") == S3ModelStore("bucket", "some/prefix")
    with pytest.raises(InputError, match="bucket"):
        model_store("s3:///x")
    with pytest.raises(InputError, match="s3://"):
        model_store("gs://bucket")
    with pytest.raises(InputError, match="relative path"):
        LocalModelStore(tmp_path).save(tmp_path / "m.pt", "../escape.pt")
    with pytest.raises(InputError, match="no model"):
        LocalModelStore(tmp_path).fetch("missing.pt", tmp_path / "x.pt")
