"""Concurrency pools: each limits steps across all runs (one slot each from dagster.yaml's
default_limit; raise one with `dagster instance concurrency set <pool> <n>`)."""

# Two benchmarks at once would measure each other: benchmarks and searches share it.
BENCHMARK_POOL = "benchmark"
# DuckDB takes one writer at a time.
DUCKDB_WRITER_POOL = "duckdb_writer"
# One GPU, one training at a time.
GPU_POOL = "gpu"
