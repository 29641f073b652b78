"""prepare_benchmark: the use-case `ocog data prepare` and the prepared_datasets asset share."""

from __future__ import annotations

import pytest

from ocog_lib.data.benchmarks import BENCHMARKS, BenchmarkOptions, prepare_benchmark
from ocog_lib.data.manifest import DatasetManifest
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.support.archives import build_dfc22


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", results_db=tmp_path / "ocog.duckdb")


def test_reads_the_raw_folder_and_writes_the_prepared_one(settings):
    expected = build_dfc22(settings.raw_dir("dfc22"))
    result = prepare_benchmark(settings, "dfc22", BenchmarkOptions(limit=1))
    assert len(result.manifest.items) == 1 and len(expected.images) > 1
    assert result.unlabeled == expected.unlabeled
    saved = DatasetManifest.load(settings.prepared_dir("dfc22"))
    assert [i.name for i in saved.items] == [i.name for i in result.manifest.items]


@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_a_missing_raw_folder_says_where_to_get_the_data(settings, dataset):
    with pytest.raises(InputError) as err:
        prepare_benchmark(settings, dataset)
    message = str(err.value)
    assert str(settings.raw_dir(dataset)) in message and "https://" in message
    assert not settings.prepared_dir(dataset).exists()


def test_an_unknown_dataset_names_the_valid_ones(settings):
    with pytest.raises(InputError, match="no preparer; valid: vaihingen, potsdam, dfc22"):
        prepare_benchmark(settings, "sample")
