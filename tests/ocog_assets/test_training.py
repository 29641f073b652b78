"""trained_models materialized in-process by real Dagster on the tiny sample's variants."""

import json

import dagster as dg

from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
from ocog_assets.defs.training.assets import K8S_GPU_TAGS, TrainingConfig, trained_models
from ocog_lib import results


def test_trained_models_partition_writes_rows_and_metadata(instance, train_settings):  # noqa: F811
    from ocog_assets.definitions import defs

    tags = defs.get_assets_def("trained_models").op.tags
    assert json.loads(tags["dagster-k8s/config"]) == K8S_GPU_TAGS["dagster-k8s/config"]
    paths = OcogPaths(data_dir=str(train_settings.data_dir),
                      results_db=str(train_settings.results_db))
    key = dg.MultiPartitionKey({"dataset": "sample", "loader_config": "local-optimal"})
    cfg = TrainingConfig(iterations=4, eval_every=2, patch_size=64, width=4,
                         model_store=str(train_settings.data_dir / "store"))
    res = dg.materialize(
        [trained_models], partition_key=key, instance=instance,
        resources={"paths": paths, "results": ResultsStore(paths=paths)},
        run_config=dg.RunConfig({"trained_models": cfg}),
    )
    assert res.success
    meta = res.asset_materializations_for_node("trained_models")[0].metadata
    assert meta["steps"].value == 4 and 0 <= meta["data_wait_fraction"].value < 1
    assert meta["miou_curve"].value.startswith("![mIoU](data:image/png;base64,iVBOR")
    _, rows = results.query(train_settings.results_db,
                            "SELECT loader_config, step FROM training_runs ORDER BY step")
    assert rows == [("local-optimal", 0), ("local-optimal", 2), ("local-optimal", 4)]
    assert list((train_settings.data_dir / "store" / "sample" / "local-optimal").glob("*.pt"))
