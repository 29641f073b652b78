"""The DuckDB results file: schema, migrations, the one writer path, read-only queries.

DuckDB lets one process write a file at a time, so every write goes through
`write_rows` (open, one transaction, close) and the Dagster layer runs it in a pool of 1.
A short retry covers the moment another process holds the file's lock; a write that still
cannot get it is spooled beside the file (`<db>.spool/`) and merged, exactly once, by the
next writable open, so no measurement is lost. Queries run in a read-only sandbox: one
statement, no file access, no extensions, no settings.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np

from ocog_lib.atomic import atomic_write_text, claim_path
from ocog_lib.errors import InputError, OcogError
from ocog_lib.secrets import redact_value

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


# Append only: a released migration is never edited; later issues add search_trials,
# grid_cells, training_runs as versions 2, 3, ...
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "variant_stats and stream_benchmarks",
        (
            """
            CREATE TABLE IF NOT EXISTS variant_stats (
                dataset VARCHAR NOT NULL,
                variant VARCHAR NOT NULL,
                item VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                path VARCHAR,
                bytes BIGINT,
                decoded_bytes BIGINT,
                compression_ratio DOUBLE,
                write_seconds DOUBLE,
                compression VARCHAR,
                level INTEGER,
                predictor INTEGER,
                block_size INTEGER,
                interleave VARCHAR,
                is_valid_cog BOOLEAN,
                lossless_ok BOOLEAN,
                written_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (dataset, variant, item, kind)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS stream_benchmarks (
                run_id VARCHAR NOT NULL,
                ts TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                name VARCHAR,
                dataset VARCHAR,
                variant VARCHAR,
                storage VARCHAR,
                sampler VARCHAR,
                loader VARCHAR,
                samples_per_s DOUBLE,
                mb_per_s DOUBLE,
                ratio_vs_reference_default DOUBLE,
                ratio_vs_limit DOUBLE,
                cache_hit_rate DOUBLE,
                peak_rss_mb DOUBLE,
                startup_s DOUBLE,
                batch_mix DOUBLE,
                rtt_ms DOUBLE,
                cap_mb_s DOUBLE,
                config JSON,
                host JSON,
                git_sha VARCHAR
            )
            """,
        ),
    ),
    Migration(
        2,
        "stream_benchmarks: memory counted once across workers (PSS) and data-wait",
        (
            "ALTER TABLE stream_benchmarks ADD COLUMN IF NOT EXISTS peak_pss_mb DOUBLE",
            "ALTER TABLE stream_benchmarks ADD COLUMN IF NOT EXISTS data_wait_fraction DOUBLE",
        ),
    ),
    Migration(
        3,
        "search_trials, grid_cells and the best_configs view",
        (
            """
            CREATE TABLE IF NOT EXISTS search_trials (
                study VARCHAR NOT NULL,
                dataset VARCHAR NOT NULL,
                storage VARCHAR NOT NULL,
                trial INTEGER NOT NULL,
                params JSON,
                value DOUBLE,
                mb_per_s DOUBLE,
                state VARCHAR NOT NULL,
                reason VARCHAR,
                warmup_s DOUBLE,
                seconds DOUBLE,
                started_at TIMESTAMPTZ,
                finished_at TIMESTAMPTZ,
                host JSON,
                git_sha VARCHAR,
                PRIMARY KEY (study, trial)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS grid_cells (
                grid_id VARCHAR NOT NULL,
                dataset VARCHAR NOT NULL,
                storage VARCHAR NOT NULL,
                var1 VARCHAR NOT NULL,
                value1 VARCHAR NOT NULL,
                var2 VARCHAR NOT NULL,
                value2 VARCHAR NOT NULL,
                repeats INTEGER,
                mean_samples_per_s DOUBLE,
                std_samples_per_s DOUBLE,
                mean_mb_per_s DOUBLE,
                config JSON,
                ts TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
            )
            """,
            """
            CREATE OR REPLACE VIEW best_configs AS
            SELECT dataset, storage,
                   arg_max(params, value) AS params,
                   max(value) AS samples_per_s,
                   arg_max(mb_per_s, value) AS mb_per_s,
                   arg_max(study, value) AS study,
                   arg_max(trial, value) AS trial
            FROM search_trials
            WHERE state = 'COMPLETE' AND value IS NOT NULL
            GROUP BY dataset, storage
            """,
        ),
    ),
    Migration(
        4,
        "training_runs and the model_comparison view",
        (
            """
            CREATE TABLE IF NOT EXISTS training_runs (
                run VARCHAR NOT NULL,
                dataset VARCHAR NOT NULL,
                loader_config VARCHAR NOT NULL,
                step INTEGER NOT NULL,
                seconds DOUBLE,
                samples_seen BIGINT,
                loss DOUBLE,
                miou DOUBLE,
                per_class_iou JSON,
                data_wait DOUBLE,
                samples_per_s DOUBLE,
                device VARCHAR,
                config JSON,
                ts TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
            )
            """,
            """
            CREATE OR REPLACE VIEW model_comparison AS
            WITH latest AS (
                SELECT dataset, loader_config, arg_max(run, ts) AS run
                FROM training_runs GROUP BY dataset, loader_config
            )
            SELECT t.dataset, t.loader_config, t.run,
                   max(t.seconds) AS seconds,
                   max(t.samples_seen) AS samples_seen,
                   arg_max(t.miou, t.step) AS final_miou,
                   max(t.miou) AS best_miou,
                   arg_max(t.samples_per_s, t.step) AS samples_per_s,
                   arg_max(t.data_wait, t.step) AS data_wait,
                   any_value(t.device) AS device
            FROM training_runs t JOIN latest l USING (dataset, loader_config, run)
            GROUP BY t.dataset, t.loader_config, t.run
            ORDER BY t.dataset, t.loader_config
            """,
        ),
    ),
    Migration(
        5,
        "spool_merges: spooled writes already merged (each spool file counts once)",
        (
            """
            CREATE TABLE IF NOT EXISTS spool_merges (
                spool_id VARCHAR PRIMARY KEY,
                table_name VARCHAR NOT NULL,
                rows INTEGER NOT NULL,
                spooled_at TIMESTAMPTZ,
                merged_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
            )
            """,
        ),
    ),
    Migration(
        6,
        "tile_benchmarks: XYZ tiles of a time stack, ocog vs rio-tiler, cold and warm",
        (
            """
            CREATE TABLE IF NOT EXISTS tile_benchmarks (
                run_id VARCHAR NOT NULL,
                measured_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                git_sha VARCHAR,
                host JSON,
                dataset VARCHAR NOT NULL,
                loader VARCHAR NOT NULL,
                zoom INTEGER NOT NULL,
                tiles INTEGER NOT NULL,
                state VARCHAR NOT NULL,
                p50_ms DOUBLE,
                p95_ms DOUBLE,
                bytes_per_tile DOUBLE,
                equal BOOLEAN,
                config JSON,
                ratio_vs_rio_tiler DOUBLE
            )
            """,
        ),
    ),
    Migration(
        7,
        "tile_benchmarks gains location, resampling and the link's limit; area_benchmarks: "
        "a temporal reducer over an area, ocog vs downloading the scenes vs VirtuGhan",
        (
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS location VARCHAR "
            "DEFAULT 'local'",
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS resampling VARCHAR",
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS wire_bytes_per_tile DOUBLE",
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS limit_ms DOUBLE",
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS ratio_vs_limit DOUBLE",
            """
            CREATE TABLE IF NOT EXISTS area_benchmarks (
                run_id VARCHAR NOT NULL,
                measured_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                git_sha VARCHAR,
                host JSON,
                dataset VARCHAR NOT NULL,
                loader VARCHAR NOT NULL,
                location VARCHAR NOT NULL,
                state VARCHAR NOT NULL,
                dates INTEGER NOT NULL,
                width INTEGER NOT NULL,
                height INTEGER NOT NULL,
                reducer VARCHAR NOT NULL,
                p50_ms DOUBLE,
                bytes_read DOUBLE,
                equal BOOLEAN,
                ratio_vs_ocog DOUBLE,
                config JSON
            )
            """,
        ),
    ),
    Migration(
        8,
        "patch_embeddings (vectors per patch, keyed by H3 cell) and similar_benchmarks",
        (
            # One table for every model: `vector` is FLOAT[] with its length in `dim` (checked),
            # cast to FLOAT[dim] where array_cosine_similarity needs a fixed size; `idx` is
            # the row's key within (dataset, model_id) and in the ANN index; `batch` is the
            # content fingerprint of the set up to the write that added the row.
            """
            CREATE TABLE IF NOT EXISTS patch_embeddings (
                dataset VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                idx BIGINT NOT NULL,
                cell UBIGINT NOT NULL,
                lon DOUBLE NOT NULL,
                lat DOUBLE NOT NULL,
                time TIMESTAMP,
                source VARCHAR,
                "row" INTEGER,
                col INTEGER,
                label SMALLINT,
                dim SMALLINT NOT NULL,
                vector FLOAT[] NOT NULL,
                batch VARCHAR NOT NULL,
                written_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (dataset, model_id, idx),
                CHECK (len(vector) = dim)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS similar_benchmarks (
                run_id VARCHAR NOT NULL,
                measured_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                git_sha VARCHAR,
                host JSON,
                method VARCHAR NOT NULL,
                n BIGINT NOT NULL,
                dim INTEGER NOT NULL,
                queries INTEGER,
                k INTEGER,
                connectivity INTEGER,
                expansion_add INTEGER,
                expansion_search INTEGER,
                build_s DOUBLE,
                index_bytes BIGINT,
                rss_delta_mb DOUBLE,
                p50_ms DOUBLE,
                p95_ms DOUBLE,
                recall_at_10 DOUBLE,
                threads INTEGER,
                config JSON
            )
            """,
        ),
    ),
    Migration(
        9,
        "retrieval_quality: precision@k and mAP@k of a trained encoder and its baselines",
        (
            # One row per method of a measurement (ocog_lib.embed.quality.quality_rows'
            # keys); a new measurement of the same (dataset, model_id, k) replaces the old.
            """
            CREATE TABLE IF NOT EXISTS retrieval_quality (
                run_id VARCHAR NOT NULL,
                measured_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                dataset VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                method VARCHAR NOT NULL,
                baseline BOOLEAN NOT NULL,
                dim INTEGER NOT NULL,
                k INTEGER NOT NULL,
                precision_at_k DOUBLE,
                map_at_k DOUBLE,
                n_queries INTEGER,
                config JSON,
                git_sha VARCHAR,
                host JSON
            )
            """,
        ),
    ),
    Migration(
        10,
        "stream_benchmarks gains ratio_vs_cache_limit: each ocog row against the fewest tile "
        "decodes its windows need under its cache budget (bench.cache_limit)",
        ("ALTER TABLE stream_benchmarks ADD COLUMN IF NOT EXISTS ratio_vs_cache_limit DOUBLE",),
    ),
    Migration(
        11,
        "compressed_patches (each patch's bitstream and hash code) and compressed_archives "
        "(one row per archive build: rate, distortion, bytes against the baselines)",
        (
            # One set per (dataset, codec_id): `idx` numbers its rows from 0 (the row of the
            # code matrix search loads); `code` is the packed K-bit hash (K/8 bytes, first
            # bit in the high bit), `bitstream` the patch's range-coded latents
            # (compress.bitstream's format `format_version`). Search reads `code` and the
            # location columns only, never `bitstream`.
            """
            CREATE TABLE IF NOT EXISTS compressed_patches (
                dataset VARCHAR NOT NULL,
                codec_id VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                idx BIGINT NOT NULL,
                cell UBIGINT NOT NULL,
                lon DOUBLE NOT NULL,
                lat DOUBLE NOT NULL,
                time TIMESTAMP,
                source VARCHAR,
                "row" INTEGER,
                col INTEGER,
                label SMALLINT,
                code_bits SMALLINT NOT NULL,
                code BLOB NOT NULL,
                format_version SMALLINT NOT NULL,
                bitstream BLOB NOT NULL,
                written_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (dataset, codec_id, idx),
                CHECK (octet_length(code) * 8 = code_bits)
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS compressed_archives (
                run_id VARCHAR NOT NULL,
                written_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                dataset VARCHAR NOT NULL,
                codec_id VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                patches BIGINT NOT NULL,
                patch_size INTEGER,
                bands INTEGER,
                dtype VARCHAR,
                code_bits SMALLINT,
                bitstream_bytes BIGINT,
                bpp DOUBLE,
                psnr_db DOUBLE,
                ssim DOUBLE,
                raw_bytes BIGINT,
                zstd_bytes BIGINT,
                lerc_zstd_bytes BIGINT,
                lossy_codec VARCHAR,
                lossy_bpp DOUBLE,
                lossy_psnr_db DOUBLE,
                lossy_ssim DOUBLE,
                seconds DOUBLE,
                config JSON,
                git_sha VARCHAR,
                host JSON
            )
            """,
        ),
    ),
    Migration(
        12,
        "retrieval_benchmarks: hash search at scale (latency, index bytes) and retrieval "
        "quality of hash codes against float embeddings, decoded-pixel hashing, random codes",
        (
            # kind 'scale': one row per (method, n) with latency and index bytes, quality
            # columns NULL; kind 'quality': one row per method on held-out patches.
            """
            CREATE TABLE IF NOT EXISTS retrieval_benchmarks (
                run_id VARCHAR NOT NULL,
                measured_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                git_sha VARCHAR,
                host JSON,
                kind VARCHAR NOT NULL,
                method VARCHAR NOT NULL,
                dataset VARCHAR,
                n BIGINT,
                bits INTEGER,
                dim INTEGER,
                k INTEGER,
                queries INTEGER,
                build_s DOUBLE,
                index_bytes BIGINT,
                bytes_per_item DOUBLE,
                p50_ms DOUBLE,
                p95_ms DOUBLE,
                recall_at_k DOUBLE,
                precision_at_k DOUBLE,
                map_at_k DOUBLE,
                encode_ms_per_item DOUBLE,
                config JSON
            )
            """,
        ),
    ),
    Migration(
        13,
        "lineage: content_hash (ocog_lib.data.lineage) of the variant, package or archive "
        "each measurement row measured",
        # variant_stats: the variant's hash, to go from a row's hash to its variant
        (
            "ALTER TABLE variant_stats ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE stream_benchmarks ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE search_trials ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE grid_cells ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE tile_benchmarks ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE area_benchmarks ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE retrieval_quality ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE retrieval_benchmarks ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
            "ALTER TABLE compressed_archives ADD COLUMN IF NOT EXISTS content_hash VARCHAR",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_LOCK_WAIT_S = 30.0
LOCK_WAIT_ENV = "OCOG_DUCKDB_LOCK_WAIT_S"
SPOOL_FORMAT = "ocog-spool/1"
_T = TypeVar("_T")


@dataclass(frozen=True)
class Columns:
    """Rows as equal-length columns, write_rows' bulk form: one DuckDB scan of numpy arrays
    instead of one INSERT per row (row by row, 2e4 embeddings took 27 s; 1e5 this way,
    well under one). A value is a 1-D array (object for text, JSON or NULLs; datetime64 is
    UTC) or, for a list column such as FLOAT[], a 2-D array (one row per row)."""

    data: dict[str, Any]

    def __post_init__(self) -> None:
        lengths = {name: len(values) for name, values in self.data.items()}
        if len(set(lengths.values())) > 1:
            raise InputError("columns", f"unequal lengths {lengths}")

    def __len__(self) -> int:
        return next((len(v) for v in self.data.values()), 0)


class ResultsLocked(InputError):
    """Another process kept the results file locked for longer than the lock wait."""


def lock_wait_s(override: float | None = None) -> float:
    """Seconds to wait for the file's lock: `override`, else $OCOG_DUCKDB_LOCK_WAIT_S, else 30."""
    if override is not None:
        return float(override)
    raw = os.environ.get(LOCK_WAIT_ENV, "")
    if not raw:
        return _LOCK_WAIT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise InputError(LOCK_WAIT_ENV, f"{raw!r} is not a number of seconds >= 0")
    return value


def _with_lock_retry(fn: Callable[[], _T], db_path: Path, wait_s: float) -> _T:
    """Retry while another process holds the file (DuckDB: one writer, no readers beside it)."""
    deadline = time.monotonic() + wait_s
    delay = 0.05
    while True:
        try:
            return fn()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() > deadline:
                raise ResultsLocked(db_path, f"locked by another process for more than "
                                             f"{wait_s:g} s ({_lock_holder(exc)})") from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _lock_holder(exc: BaseException) -> str:
    """DuckDB's 'Conflicting lock is held in <program> (PID n)', without the file again."""
    text = _first_line(exc)
    start = text.find("Conflicting lock")
    return text[start:].split(". See also")[0] if start >= 0 else text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the schema to SCHEMA_VERSION; a migration already recorded is skipped."""
    con.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            name VARCHAR NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
        )
        """
    )
    applied = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for m in MIGRATIONS:
        if m.version in applied:
            continue
        with _transaction(con):
            for stmt in m.statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name]
            )
    return schema_version(con)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


@contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


# A read-only connection is a sandbox over the results: no files other than the results file
# (no COPY TO, read_csv, glob, ATTACH), no extension installed or loaded, settings locked.
READ_SANDBOX = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "lock_configuration": True,
}


@contextmanager
def connect(db_path: str | Path, *, read_only: bool = False,
            lock_wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the results file. A writable connection migrates it and merges spooled writes
    first; a read-only one is the query sandbox. Raises ResultsLocked after the lock wait."""
    db_path = Path(db_path)
    wait = lock_wait_s(lock_wait)
    if read_only:
        if not db_path.exists():
            raise InputError(
                db_path,
                "no such DuckDB results file (materialize variant_stats, run `ocog demo` or a "
                "benchmark first, or point OCOG_DUCKDB at an existing file)",
            )
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    config = dict(READ_SANDBOX) if read_only else {}
    try:
        con = _with_lock_retry(
            lambda: duckdb.connect(str(db_path), read_only=read_only, config=config),
            db_path, wait)
    except duckdb.Error as exc:
        raise InputError(db_path, f"cannot open DuckDB file ({_first_line(exc)})") from exc
    try:
        if not read_only:
            migrate(con)
            merge_spool(con, db_path)
        yield con
    finally:
        con.close()


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def write_rows(
    db_path: str | Path,
    table: str,
    rows: Sequence[dict[str, Any]] | Columns,
    *,
    replace_where: dict[str, Any] | None = None,
    lock_wait: float | None = None,
) -> int:
    """The one writer: append `rows` to `table` in one transaction, returns rows written.

    replace_where={"dataset": "sample", "variant": "default"} first deletes the rows
    matching every pair, so re-materializing a partition replaces its rows. JSON columns
    take dicts (or JSON text) and are redacted; TIMESTAMPTZ columns take datetimes or
    epoch seconds. When the file stays locked past the lock wait (`lock_wait`, else
    lock_wait_s()), the rows are spooled beside it and merged by the next writer instead.
    `Columns` instead of dicts is the bulk form of the same write (see Columns).
    """
    if replace_where is not None and not replace_where:
        raise InputError("replace_where", "empty: it would delete the whole table")
    rows = rows if isinstance(rows, Columns) else list(rows)
    requested_ns = time.time_ns()
    try:
        with connect(db_path, lock_wait=lock_wait) as con:
            cols = table_columns(con, table)
            _check_columns(table, cols, rows, replace_where, known=_tables(con))
            with _transaction(con):
                _apply(con, table, cols, rows, replace_where)
            return len(rows)
    except ResultsLocked as exc:
        path = _spool(Path(db_path), table, rows, replace_where, requested_ns, exc.cause)
        log.warning("ocog: warning: %s: %s; %d row(s) for %s kept in %s, merged by the next "
                    "write to it", db_path, exc.cause, len(rows), table, path)
        return len(rows)
    except duckdb.Error as exc:
        raise InputError(f"write to {table!r} in {db_path}", _first_line(exc)) from exc


def _check_columns(table: str, cols: dict[str, str], rows: Sequence[dict[str, Any]] | Columns,
                   replace_where: dict[str, Any] | None, *, known: Sequence[str]) -> None:
    if not cols:
        names = ", ".join(m for m in known if m not in ("schema_migrations", "spool_merges"))
        raise InputError(f"table {table!r}", f"not in the results schema ({names})")
    given = set(rows.data) if isinstance(rows, Columns) else {k for r in rows for k in r}
    unknown = sorted(k for k in given | set(replace_where or {}) if k not in cols)
    if unknown:
        raise InputError(f"table {table!r}", f"unknown column(s) {unknown}")


def _apply(con: duckdb.DuckDBPyConnection, table: str, cols: dict[str, str],
           rows: Sequence[dict[str, Any]] | Columns, replace_where: dict[str, Any] | None) -> None:
    """The write itself, inside the caller's transaction: delete `replace_where`, insert."""
    if replace_where:
        where = " AND ".join(f'"{k}" = ?' for k in replace_where)
        con.execute(f'DELETE FROM "{table}" WHERE {where}', list(replace_where.values()))
    if isinstance(rows, Columns):
        _insert_columns(con, table, cols, rows)
        return
    names = [c for c in cols if any(c in r for r in rows)]
    if rows and names:
        placeholders = ", ".join("?" for _ in names)
        quoted = ", ".join(f'"{n}"' for n in names)
        con.executemany(
            f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders})',
            [[_to_db(r.get(n), cols[n]) for n in names] for r in rows],
        )


def _insert_columns(con: duckdb.DuckDBPyConnection, table: str, cols: dict[str, str],
                    columns: Columns) -> None:
    """INSERT ... SELECT from the columns registered as one scan (values converted as
    `_to_db` converts a row's: JSON text, redacted strings; datetime64 taken as UTC)."""
    if not len(columns) or not columns.data:
        return
    scan, names, exprs = {}, [], []
    for i, (name, values) in enumerate(columns.data.items()):
        names.append(f'"{name}"')
        if np.ndim(values) == 2:  # one scan column per position, a list per row in SQL
            parts = np.ascontiguousarray(np.asarray(values).T)
            scan |= {f"c{i}_{j}": part for j, part in enumerate(parts)}
            exprs.append(f"list_value({', '.join(f'c{i}_{j}' for j in range(len(parts)))})")
            continue
        scan[f"c{i}"] = _bulk_array(values, cols[name])
        utc = cols[name].startswith("TIMESTAMP WITH") and scan[f"c{i}"].dtype.kind == "M"
        exprs.append(f"timezone('UTC', c{i})" if utc else f"c{i}")
    view = f"_ocog_bulk_{uuid.uuid4().hex[:12]}"
    con.register(view, scan)
    try:
        con.execute(f'INSERT INTO "{table}" ({", ".join(names)}) '
                    f'SELECT {", ".join(exprs)} FROM {view}')
    finally:
        with contextlib.suppress(duckdb.Error):  # in an aborted transaction: the error is above
            con.unregister(view)


def _bulk_array(values: Any, dtype: str) -> np.ndarray:
    """One 1-D column as DuckDB scans it, text and JSON converted as `_to_db` does."""
    a = np.asarray(values)
    if a.dtype.kind in "OU":
        cache: dict[str, Any] = {}
        out = np.empty(len(a), dtype=object)
        for i, v in enumerate(a.tolist()):
            if isinstance(v, str) and dtype != "JSON":
                out[i] = cache[v] if v in cache else cache.setdefault(v, _to_db(v, dtype))
            else:
                out[i] = _to_db(v, dtype)
        return out
    return np.ascontiguousarray(a)


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]


# --- the spool: writes that could not get the lock ------------------------------------------
#
# <db>.spool/<ns>-<id>.json, written to a temporary name then renamed. A writer that opens
# the file (holding DuckDB's lock, so no other process merges) claims each one by renaming
# it to <name>.claimed-<pid>-<token> (one rename wins), commits its rows together with its
# id in spool_merges (so a crash before the delete never merges it twice), then deletes it.
# A claim left by another, dead, process is claimed again; one that cannot be merged at all
# (a duplicate key, say) is kept as <name>.failed and reported.


def spool_dir(db_path: str | Path) -> Path:
    """Where writes wait that could not get the results file's lock."""
    return Path(f"{Path(db_path)}.spool")


@functools.cache
def _schema() -> tuple[dict[str, dict[str, str]], dict[str, tuple[str, ...]]]:
    """Column types of every table at SCHEMA_VERSION, known without opening the file, and
    the columns that default to the time of the write."""
    con = duckdb.connect(":memory:")
    try:
        migrate(con)
        stamped = con.execute(
            "SELECT table_name, list(column_name) FROM information_schema.columns "
            "WHERE lower(column_default) = 'current_timestamp' GROUP BY table_name").fetchall()
        return {t: table_columns(con, t) for t in _tables(con)}, {t: tuple(c) for t, c in stamped}
    finally:
        con.close()


def _spool(db_path: Path, table: str, rows: Sequence[dict[str, Any]] | Columns,
           replace_where: dict[str, Any] | None, requested_ns: int, cause: str) -> Path:
    """Keep a write that could not get the lock; values converted (and redacted) as in DuckDB."""
    schema, stamped = _schema()
    cols = schema.get(table, {})
    _check_columns(table, cols, rows, replace_where, known=sorted(schema))
    # a column that defaults to the write's time gets the time of this write, not the merge's
    now = {c: requested_ns / 1e9 for c in stamped.get(table, ())}
    doc = {"format": SPOOL_FORMAT, "table": table, "replace_where": replace_where,
           "spooled_at": dt.datetime.now(dt.UTC), "cause": cause}
    if isinstance(rows, Columns):
        stamp = np.datetime64(requested_ns // 1000, "us")
        given = {c: np.full(len(rows), stamp) for c in now if c not in rows.data} | rows.data
        doc["columns"] = {k: _column_json(v, cols[k]) for k, v in given.items()}
    else:
        doc["rows"] = [{k: _to_db(v, cols[k]) for k, v in {**now, **r}.items()} for r in rows]
    path = spool_dir(db_path) / f"{requested_ns:020d}-{uuid.uuid4().hex[:12]}.json"
    try:
        atomic_write_text(path, json.dumps(doc, default=_spool_value))
    except OSError as exc:
        raise InputError(db_path, f"{cause}, and spooling the rows to {path} failed ({exc})"
                         ) from exc
    return path


def _column_json(values: Any, dtype: str) -> dict:
    """A bulk column in the spool: its numpy dtype and values (datetime64 as int64 ticks)."""
    a = np.asarray(values)
    if a.dtype.kind == "M":
        return {"dtype": str(a.dtype), "ticks": a.view("int64").tolist()}
    if a.dtype.kind in "OU":
        return {"dtype": "object", "values": _bulk_array(a, dtype).tolist()}
    return {"dtype": str(a.dtype), "values": a.tolist()}


def _column_from_json(doc: dict) -> np.ndarray:
    if "ticks" in doc:
        return np.asarray(doc["ticks"], dtype="int64").view(doc["dtype"])
    if doc["dtype"] == "object":
        out = np.empty(len(doc["values"]), dtype=object)
        out[:] = doc["values"]
        return out
    return np.asarray(doc["values"], dtype=doc["dtype"])


def _spooled_rows(doc: dict) -> Sequence[dict[str, Any]] | Columns:
    if "columns" in doc:
        return Columns({k: _column_from_json(v) for k, v in doc["columns"].items()})
    return doc["rows"]


def _spool_value(value: Any) -> Any:
    if isinstance(value, dt.date):
        return {"$ts": value.isoformat()}
    if isinstance(value, bytes | bytearray | memoryview):  # BLOBs: bitstreams, hash codes
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def _from_spool(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and isinstance(obj.get("$ts"), str):
        return dt.datetime.fromisoformat(obj["$ts"])
    if len(obj) == 1 and isinstance(obj.get("$b64"), str):
        return base64.b64decode(obj["$b64"])
    return obj


def _spool_queue(folder: Path) -> list[tuple[Path, str]]:
    """(file, spool id) of every spooled write this process may claim, oldest first."""
    if not folder.is_dir():
        return []
    mine = f".claimed-{os.getpid()}-"
    out = []
    for path in folder.iterdir():
        spool_id = path.name.partition(".claimed-")[0]
        if spool_id.startswith(".") or not spool_id.endswith(".json") or mine in path.name:
            continue  # temporary, failed, or being merged by another thread of this process
        out.append((path, spool_id))  # pending, or claimed by a process that is gone
    return sorted(out, key=lambda p: p[1])


def merge_spool(con: duckdb.DuckDBPyConnection, db_path: str | Path) -> int:
    """Commit every spooled write of `db_path`, oldest first, each exactly once; rows merged."""
    merged = 0
    for path, spool_id in _spool_queue(spool_dir(db_path)):
        claimed = path.with_name(f"{spool_id}.claimed-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if not claim_path(path, claimed):
            continue  # another writer took it
        try:
            merged += _merge_one(con, claimed, spool_id)
        except BaseException as exc:
            if not isinstance(exc, _UNMERGEABLE) or isinstance(exc, _TRANSIENT):
                os.replace(claimed, claimed.with_name(spool_id))  # pending again
                raise
            failed = claimed.with_name(f"{spool_id}.failed")
            os.replace(claimed, failed)
            log.warning("ocog: warning: spooled write %s cannot be merged into %s (%s); "
                        "kept as %s", spool_id, db_path, _first_line(exc), failed)
            continue
        claimed.unlink()
    if merged:
        log.info("merged %d spooled row(s) from %s into %s", merged, spool_dir(db_path), db_path)
    return merged


# A spooled write that fails for these reasons fails every time (a duplicate key, a bad file);
# the transient ones (I/O, memory, a conflicting transaction) leave it pending.
_UNMERGEABLE = (duckdb.Error, OcogError, ValueError, KeyError, TypeError)
_TRANSIENT = (duckdb.IOException, duckdb.OutOfMemoryException, duckdb.InterruptException,
              duckdb.TransactionException, duckdb.FatalException)


def _merge_one(con: duckdb.DuckDBPyConnection, path: Path, spool_id: str) -> int:
    doc = json.loads(path.read_text(), object_hook=_from_spool)
    if doc.get("format") != SPOOL_FORMAT:
        raise ValueError(f"not an {SPOOL_FORMAT} file")
    table, rows, where = doc["table"], _spooled_rows(doc), doc.get("replace_where")
    cols = table_columns(con, table)
    _check_columns(table, cols, rows, where, known=_tables(con))
    with _transaction(con):
        if con.execute("SELECT 1 FROM spool_merges WHERE spool_id = ?", [spool_id]).fetchone():
            return 0  # committed before, its file not yet deleted
        _apply(con, table, cols, rows, where)
        con.execute(
            "INSERT INTO spool_merges (spool_id, table_name, rows, spooled_at) "
            "VALUES (?, ?, ?, ?)", [spool_id, table, len(rows), doc.get("spooled_at")])
    return len(rows)


@dataclass(frozen=True)
class SpoolStatus:
    folder: Path
    writes: int  # spooled writes waiting to be merged
    rows: int
    failed: int  # spooled writes that could not be merged (kept as *.failed)

    def note(self, db_path: str | Path) -> str | None:
        """One line for readers: what the results file does not hold yet."""
        parts = []
        if self.writes:
            parts.append(f"{self.rows} spooled row(s) in {self.writes} write(s) under "
                         f"{self.folder} are not in {db_path} yet: the next write merges them")
        if self.failed:
            parts.append(f"{self.failed} spooled write(s) under {self.folder} could not be "
                         "merged (*.failed)")
        return "; ".join(parts) or None


def spool_status(db_path: str | Path) -> SpoolStatus:
    """Spooled writes of `db_path` not merged yet (claimed ones included)."""
    folder = spool_dir(db_path)
    writes = rows = failed = 0
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.name.startswith("."):
            continue
        if path.name.endswith(".json.failed"):
            failed += 1
        elif path.name.partition(".claimed-")[0].endswith(".json"):
            writes += 1
            try:
                rows += len(_spooled_rows(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                pass  # merged and deleted meanwhile, or unreadable: counted as a write
    return SpoolStatus(folder, writes, rows, failed)


def _to_db(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "JSON":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InputError(value[:80], f"not JSON text ({exc})") from exc
        return json.dumps(redact_value(value), sort_keys=True, default=str)
    if dtype.startswith("TIMESTAMP") and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):  # a text column may hold a URI or an error quoting one
        return redact_value(value)
    return value


# --- queries: one read-only statement in the sandbox ------------------------------------------

_READ_STATEMENTS = frozenset({"SELECT", "EXPLAIN"})  # SELECT covers WITH, FROM, SHOW, DESCRIBE
_READ_PRAGMAS = frozenset({
    "table_info", "show", "show_tables", "show_tables_expanded", "show_databases",
    "database_list", "database_size", "storage_info", "metadata_info", "version", "platform",
    "functions", "collations", "user_agent",
})


def query(db_path: str | Path, sql: str, params: Sequence[Any] | None = None, *,
          lock_wait: float | None = None) -> tuple[list[str], list[tuple]]:
    """Run one read-only statement on the results file in the sandbox: (column names, rows)."""
    what = _query_name(sql)
    _check_read_only(sql, what)
    try:
        with connect(db_path, read_only=True, lock_wait=lock_wait) as con:
            cur = con.execute(sql, list(params) if params is not None else None)
            columns = [d[0] for d in cur.description] if cur.description else []
            return columns, cur.fetchall() if columns else []
    except duckdb.PermissionException as exc:
        raise InputError(what, "reads or writes files outside the results file, which ocog "
                               f"query does not allow ({_first_line(exc)})") from exc
    except duckdb.Error as exc:
        raise InputError(what, _first_line(exc)) from exc


def _query_name(sql: str) -> str:
    text = " ".join(str(sql).split())
    return f"query {text if len(text) <= 120 else text[:119] + '…'!r}"


def _check_read_only(sql: str, what: str) -> None:
    """Exactly one statement, and one that only reads, as DuckDB's own parser sees it."""
    parser = duckdb.connect(":memory:", config=dict(READ_SANDBOX))
    try:
        statements = parser.extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(what, _first_line(exc)) from exc
    finally:
        parser.close()
    if not statements:
        raise InputError(what, "empty: no SQL statement, only whitespace or comments")
    if len(statements) > 1:
        raise InputError(what, f"{len(statements)} statements: ocog query runs exactly one")
    kind = statements[0].type.name
    if kind in _READ_STATEMENTS or (kind == "PRAGMA" and _is_read_pragma(statements[0].query)):
        return
    label = {"LOAD": "INSTALL/LOAD", "MULTI": "PIVOT"}.get(kind, kind)
    raise InputError(what, f"{label} refused: the results are read-only here (one SELECT, "
                           "WITH, FROM, SHOW, DESCRIBE, SUMMARIZE, EXPLAIN or an "
                           "introspection PRAGMA such as table_info)")


def _is_read_pragma(statement: str) -> bool:
    """PRAGMA <name>[(...)] with an introspection name, never PRAGMA <name> = <value>."""
    tokens = [(o, t) for o, t in duckdb.tokenize(statement)
              if t != duckdb.token_type.comment]
    if len(tokens) < 2:
        return False
    end = tokens[2][0] if len(tokens) > 2 else len(statement)
    name = statement[tokens[1][0]:end].strip().strip('"').lower()
    follows = statement[end:end + 1] if len(tokens) > 2 else ""
    return name in _READ_PRAGMAS and follows in ("", "(", ";")


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                 max_width: int = 48) -> str:
    """Plain aligned text: numbers right, text left, long cells cut with '…'."""
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    numeric = [
        bool(rows)
        and all(r[i] is None or (isinstance(r[i], int | float) and not isinstance(r[i], bool))
                for r in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = zip(values, widths, numeric, strict=True)
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in parts).rstrip()

    out = [line(columns), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def _cell(value: Any, max_width: int) -> str:
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ", timespec="seconds")
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= max_width else text[: max_width - 1] + "…"
