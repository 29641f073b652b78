"""What each column of the results file means: the one source of the column descriptions
the Dagster catalog shows (`dagster/column_schema`) and `describe_table` returns.

Types and order come from the schema itself (MIGRATIONS applied to an in-memory DuckDB), so
a column added by a migration has no description until one is written here; the test
tests/ocog_assets/test_metadata.py fails until then for every table an asset writes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import duckdb

from ocog_lib import results
from ocog_lib.errors import InputError

# Columns that mean the same in every table that has them.
_COMMON = {
    "run_id": "id of the measurement run that wrote the row (one run, many rows)",
    "measured_at": "when the row was measured (UTC)",
    "written_at": "when the row was written (UTC)",
    "ts": "when the row was written (UTC)",
    "git_sha": "commit of the ocog checkout that measured (dirty trees marked)",
    "host": "host facts (hostname, CPU, cores, memory, GPU) as JSON",
    "config": "the full configuration of the run as JSON",
    "dataset": "dataset partition (sample, vaihingen, potsdam, dfc22)",
    "content_hash": "content hash (ocog_lib.data.lineage) of the variant, package or model "
                    "the row measured: the same hash means the same bytes",
    "model_id": "id of the trained model (its file in the model store)",
    "codec_id": "id of the learned codec (model id + hash-head settings)",
    "variant": "COG variant profile (default, optimal_local, optimal_remote, ...)",
    "storage": "where the COGs were read from: local or remote (emulated link)",
    "loader": "which loader measured: ocog or a peer",
    "state": "cold (caches dropped) or warm, or the trial's state",
    "p50_ms": "median latency, milliseconds",
    "p95_ms": "95th-percentile latency, milliseconds",
    "samples_per_s": "training samples (patches) delivered per second",
    "mb_per_s": "decoded megabytes (1e6 bytes) delivered per second",
    "seconds": "wall seconds",
    "dim": "vector dimension",
    "k": "neighbours scored per query",
    "idx": "row number within (dataset, model or codec), the ANN index key",
    "cell": "H3 cell index of the patch centre",
    "lon": "patch centre longitude, degrees (WGS84)",
    "lat": "patch centre latitude, degrees (WGS84)",
    "time": "acquisition time of the patch's scene",
    "source": "the prepared file the patch was cut from",
    "row": "patch's top row in its source, pixels",
    "col": "patch's left column in its source, pixels",
    "label": "majority label of the patch's mask (NULL: unlabelled)",
    "code_bits": "bits of the hash code",
}

_TABLES: dict[str, dict[str, str]] = {
    "variant_stats": {
        "item": "manifest item name", "kind": "image or mask",
        "path": "the COG file written", "bytes": "file size, bytes",
        "decoded_bytes": "decoded pixels, bytes", "compression_ratio": "decoded_bytes / bytes",
        "write_seconds": "seconds to write the file", "compression": "GDAL compression",
        "level": "compression level (NULL: codec default)", "predictor": "TIFF predictor",
        "block_size": "tile edge, pixels", "interleave": "PIXEL or BAND interleave",
        "is_valid_cog": "the COG validator and ocog's decoder accept the file",
        "lossless_ok": "decodes to the prepared pixels exactly (NULL: lossy profile)",
    },
    "stream_benchmarks": {
        "name": "row label: loader, config and variant", "sampler": "window sampler",
        "ratio_vs_reference_default": "samples/s over the OCOG toolkit's loader on the "
                                      "default variant",
        "ratio_vs_limit": "samples/s over the decode limit (1.0 = as fast as decoding)",
        "cache_hit_rate": "fraction of tile reads served by the cache",
        "peak_rss_mb": "peak resident memory summed over processes, MB",
        "peak_pss_mb": "peak proportional memory (shared pages counted once), MB",
        "startup_s": "seconds to the first batch", "batch_mix": "scene mix within a batch",
        "rtt_ms": "emulated round trip per request, ms (remote)",
        "cap_mb_s": "emulated bandwidth cap, MB/s (remote)",
        "data_wait_fraction": "share of the step time spent waiting for data",
        "ratio_vs_cache_limit": "samples/s over the fewest tile decodes the windows need "
                                "under the cache budget",
    },
    "search_trials": {
        "study": "Optuna study name", "trial": "trial number in the study",
        "params": "the trial's configuration as JSON", "value": "samples/s of the trial",
        "reason": "why a trial failed or was pruned", "warmup_s": "warm-up seconds, "
        "not counted", "started_at": "trial start (UTC)", "finished_at": "trial end (UTC)",
        "state": "Optuna trial state (COMPLETE, FAIL, PRUNED)",
    },
    "grid_cells": {
        "grid_id": "id of the grid run", "var1": "first variable", "value1": "its value",
        "var2": "second variable", "value2": "its value", "repeats": "measurements per cell",
        "mean_samples_per_s": "mean samples/s over the repeats",
        "std_samples_per_s": "standard deviation of samples/s over the repeats",
        "mean_mb_per_s": "mean decoded MB/s over the repeats",
    },
    "training_runs": {
        "run": "training run id", "loader_config": "loader config partition",
        "step": "optimizer step of the evaluation", "seconds": "training seconds so far",
        "samples_seen": "training samples so far", "loss": "training loss",
        "miou": "mean IoU on the validation windows", "per_class_iou": "IoU per class (JSON)",
        "data_wait": "share of the step time spent waiting for data",
        "device": "torch device trained on",
    },
    "tile_benchmarks": {
        "zoom": "XYZ zoom level", "tiles": "tiles requested", "bytes_per_tile": "encoded "
        "PNG bytes per tile", "equal": "pixels equal rio-tiler's",
        "ratio_vs_rio_tiler": "rio-tiler's p50 over ocog's", "location": "local or remote",
        "resampling": "resampling method", "wire_bytes_per_tile": "bytes read per tile",
        "limit_ms": "the link's lower bound per tile, ms", "ratio_vs_limit": "limit over p50",
    },
    "patch_embeddings": {
        "vector": "unit-length embedding (FLOAT[dim])",
        "batch": "content fingerprint of the set up to the write that added the row",
    },
    "retrieval_quality": {
        "method": "encoder, hash or a baseline", "baseline": "the method is a baseline",
        "precision_at_k": "share of the k neighbours with the query's label",
        "map_at_k": "mean average precision at k", "n_queries": "held-out queries",
    },
    "compressed_patches": {
        "code": "packed K-bit hash code (first bit in the high bit)",
        "format_version": "bitstream format version (compress.bitstream)",
        "bitstream": "the patch's range-coded latents",
    },
    "compressed_archives": {
        "patches": "patches archived", "patch_size": "patch edge, pixels", "bands": "bands",
        "dtype": "pixel type", "bitstream_bytes": "bitstream bytes in all",
        "bpp": "bits per pixel of the learned codec", "psnr_db": "PSNR of decoded patches, dB",
        "ssim": "SSIM of decoded patches", "raw_bytes": "the same patches raw, bytes",
        "zstd_bytes": "the same patches as ZSTD COG tiles, bytes",
        "lerc_zstd_bytes": "the same patches as LERC_ZSTD COG tiles, bytes",
        "lossy_codec": "the lossy baseline (JPEG 2000)", "lossy_bpp": "its bits per pixel",
        "lossy_psnr_db": "its PSNR, dB", "lossy_ssim": "its SSIM",
        "seconds": "seconds to build the archive",
    },
}


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    type: str
    description: str | None


@functools.cache
def _schema() -> dict[str, dict[str, str]]:
    """Every table's columns and DuckDB types, as MIGRATIONS leave them."""
    con = duckdb.connect(":memory:")
    try:
        results.migrate(con)
        tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        return {t: results.table_columns(con, t) for (t,) in tables}
    finally:
        con.close()


def describe_table(table: str) -> tuple[ColumnDoc, ...]:
    """The table's columns in order, with their types and descriptions (None: undescribed)."""
    schema = _schema()
    if table not in schema:
        raise InputError(f"table {table!r}", f"not in the results schema ({', '.join(schema)})")
    own = _TABLES.get(table, {})
    return tuple(ColumnDoc(name, dtype, own.get(name) or _COMMON.get(name))
                 for name, dtype in schema[table].items())
