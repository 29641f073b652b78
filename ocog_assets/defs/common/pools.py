"""Concurrency pools: each limits steps across all runs (one slot each from dagster.yaml's
default_limit; raise one with `dagster instance concurrency set <pool> <n>`)."""

# Two benchmarks at once would measure each other: benchmarks and searches share it.
BENCHMARK_POOL = "benchmark"
# DuckDB takes one writer at a time.
DUCKDB_WRITER_POOL = "duckdb_writer"
# One GPU, one training at a time.
GPU_POOL = "gpu"

POOLS = (BENCHMARK_POOL, DUCKDB_WRITER_POOL, GPU_POOL)


def make_pool_slots(instance) -> dict[str, int]:
    """Give every pool its slots (dagster.yaml's default_limit) before any run needs them;
    a pool that has a limit keeps it. Made lazily instead, by the first runs that need
    them, two runs starting at the same moment both got the benchmark pool's one slot once
    (docs/operations.md). Returns each pool's slot count."""
    storage = instance.event_log_storage
    known = storage.get_concurrency_keys()
    for pool in POOLS:  # (Dagster's initializer resets a raised limit: only new pools)
        if pool not in known:
            storage.initialize_concurrency_limit_to_default(pool)
    return {pool: storage.get_concurrency_info(pool).slot_count for pool in POOLS}


def main() -> int:
    """`python -m ocog_assets.defs.common.pools`: the pools' slots on $DAGSTER_HOME's instance."""
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        slots = make_pool_slots(instance)
    print("pool slots: " + ", ".join(f"{pool}={n}" for pool, n in slots.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
