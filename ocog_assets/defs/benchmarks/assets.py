"""Throughput benchmarks as an asset: one dataset|variant against the yardsticks, in DuckDB."""

from dataclasses import replace
from datetime import timedelta

import dagster as dg

from ocog_assets.defs.common import owners
from ocog_assets.defs.common.checks import partition_check
from ocog_assets.defs.common.metadata import number, table_definition, table_written
from ocog_assets.defs.common.partitions import dataset_and_variant, dataset_variant
from ocog_assets.defs.common.pools import BENCHMARK_POOL
from ocog_assets.defs.common.resources import OcogPaths, ResultsStore
from ocog_assets.defs.common.worker_processes import clean_worker_start
from ocog_assets.defs.variants.assets import cog_variants

REGRESSION = "no_throughput_drop"
# The nightly schedule (schedules.py) starts at 03:00 UTC; three variants of the quick
# profile are done well before 06:00. Past that deadline without a fresh row the asset
# shows as overdue: the schedule is off, or a nightly run failed.
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.cron(deadline_cron="0 6 * * *",
                                            lower_bound_delta=timedelta(hours=3))
_PREVIEW = (
    "name",
    "variant",
    "samples_per_s",
    "mb_per_s",
    "ratio_vs_reference_default",
    "ratio_vs_limit",
    "cache_hit_rate",
    "batch_mix",
    "peak_rss_mb",
    "data_wait_fraction",
)


class StreamBenchConfig(dg.Config):
    """How long to measure; `quick` is the < 60 s profile of `ocog bench compare --quick`."""

    quick: bool = True
    repeats: int | None = None
    seconds: float | None = None
    cache_mb: float = 128.0
    step_ms: float = 50.0
    drop_threshold: float = 0.2


@dg.asset(
    partitions_def=dataset_variant,
    deps=[cog_variants],
    pool=BENCHMARK_POOL,
    check_specs=[
        partition_check(
            REGRESSION,
            "stream_benchmarks",
            dataset_variant,
            description="No ocog row lost more than 20% samples/s against the previous run of "
            "this dataset|variant on the same host.",
        )
    ],
    group_name="benchmarks",
    owners=owners.BENCHMARKS,
    freshness_policy=NIGHTLY_FRESHNESS,
    metadata=table_definition("stream_benchmarks"),
    kinds={"duckdb", "pytorch"},
    description="ocog vs the OCOG toolkit's loader (reference default config on the default "
    "variant) vs the decode limit, for one variant; rows appended to the DuckDB "
    "table stream_benchmarks.",
)
def stream_benchmarks(
    context: dg.AssetExecutionContext,
    config: StreamBenchConfig,
    paths: OcogPaths,
    results: ResultsStore,
):
    from ocog_lib.bench.config import CompareConfig
    from ocog_lib.bench.history import regressions
    from ocog_lib.bench.local import compare
    from ocog_lib.bench.rows import result_rows_for_db
    from ocog_lib.host import git_sha, host_facts

    dataset, variant = dataset_and_variant(context)
    cfg = CompareConfig.quick() if config.quick else CompareConfig()
    overrides = {
        k: v for k, v in (("repeats", config.repeats), ("seconds", config.seconds)) if v is not None
    }
    cfg = replace(
        cfg,
        dataset=dataset,
        variants=(variant,),
        cache_mb=config.cache_mb,
        step_ms=config.step_ms,
        **overrides,
    )
    with clean_worker_start():
        result = compare(cfg, paths.settings(), progress=context.log.info)
    host = host_facts()
    results.write_rows("stream_benchmarks", result_rows_for_db(result, host, git_sha()))

    ours = [r for r in result.rows if r.loader == "ocog"]
    best = max(ours, key=lambda r: r.samples_per_s)
    yield dg.MaterializeResult(
        metadata={
            "run_id": result.run_id,
            "best": f"{best.name} ({best.samples_per_s:.0f} samples/s)",
            "best_samples_per_s": number(best.samples_per_s, "samples/s"),
            "best_ratio_vs_reference_default": number(best.ratio_vs_reference_default, "ratio"),
            "decoded_gib": number(result.decoded_gib, "GiB"),
            "cache_mb": number(result.cache_mb, "MB"),
            "content_hash": dg.MetadataValue.text(best.content_hash or ""),
            "rows": _table(result.rows),
            **table_written("stream_benchmarks", results.db_path, row_count=_count(results)),
        }
    )
    previous, dropped = regressions(
        results.db_path,
        dataset,
        variant,
        result.run_id,
        host["hostname"],
        threshold=config.drop_threshold,
    )
    yield _regression_check(previous, dropped)


def _regression_check(previous: str | None, dropped: list) -> dg.AssetCheckResult:
    """Warn (not fail) when an ocog row lost more than the threshold since `previous`."""
    return dg.AssetCheckResult(
        check_name=REGRESSION,
        passed=not dropped,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "previous_run": previous or "none on this host",
            "dropped": dg.MetadataValue.json(
                [
                    {
                        "name": r.name,
                        "previous": r.previous,
                        "current": r.current,
                        "drop": round(r.drop, 3),
                    }
                    for r in dropped
                ]
            ),
        },
    )


def _table(rows) -> dg.TableMetadataValue:
    """The preview columns of every row (BenchRow fields)."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _cell(getattr(r, k)) for k in _PREVIEW}) for r in rows],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(k, "string" if k in ("name", "variant") else "number")
                for k in _PREVIEW
            ]
        ),
    )


def _count(results: ResultsStore) -> int:
    _, rows = results.query("SELECT count(*) FROM stream_benchmarks")
    return int(rows[0][0])


def _cell(v):
    return round(v, 3) if isinstance(v, float) else v
