"""ocog errors survive a process boundary, and the CLI prints them as one line."""

from __future__ import annotations

import copy
import pickle

import pytest

from ocog_lib.cli import main as cli
from ocog_lib.data.manifest import DatasetManifest, ManifestItem
from ocog_lib.errors import InputError, OcogError, UnsupportedLayout
from ocog_lib.search.measure import TrialTimeout
from ocog_lib.settings import Settings
from tests.ocog_lib.stream.test_dataset_workers import corrupt_raster, error_in_process


class Locked(InputError):
    """A subclass whose `__init__` takes other arguments than its base's."""

    def __init__(self, path: str, pid: int):
        self.pid = pid
        super().__init__(path, f"locked by pid {pid}")


ERRORS = [
    (InputError, ("s3://bucket/a.tif", "no such key")),
    (UnsupportedLayout, ("b.tif", "predictor 9 is not supported")),
    (Locked, ("data/ocog.duckdb", 12)),
    (TrialTimeout, ("trial 3 ran past 60 s",)),
    (OcogError, ("no samples in the timed span",)),
]


@pytest.mark.parametrize("cls,args", ERRORS, ids=[c.__name__ for c, _ in ERRORS])
@pytest.mark.parametrize(
    "clone", [lambda e: pickle.loads(pickle.dumps(e)), copy.deepcopy], ids=["pickle", "deepcopy"]
)
def test_errors_pickle_with_type_message_and_fields(cls, args, clone):
    exc = cls(*args)
    exc.add_note("seen in a worker")
    got = clone(exc)
    assert type(got) is type(exc)
    assert str(got) == str(exc) and got.args == exc.args
    assert got.__dict__ == exc.__dict__  # what, cause and notes


def test_cli_prints_a_worker_error_as_one_line(tmp_path, monkeypatch, capsys):
    """`ocog bench stream --workers 2` over a file with a corrupt tile."""
    monkeypatch.setenv("OCOG_DATA_DIR", str(tmp_path / "data"))
    folder = Settings.from_env().variant_dir("broken", "v")
    folder.mkdir(parents=True)
    path = corrupt_raster(folder / "corrupt.tif")
    item = ManifestItem(name="bench_00", image="corrupt.tif", mask=None, role="bench")
    DatasetManifest(dataset="broken", classes={0: "x"}, items=[item]).save(folder)
    argv = ["bench", "stream", "--dataset", "broken", "--variant", "v", "--workers", "2",
            "--sampler", "grid", "--patch-size", "128", "--batch-size", "2",
            "--length", "4", "--seconds", "0.1", "--no-record"]  # fmt: skip
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"ocog: error: {error_in_process(path)}"]
    assert "corrupt.tif" in err
