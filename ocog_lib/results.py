"""The DuckDB results file: schema, migrations, the one writer path, read-only queries.

DuckDB lets one process write a file at a time, so every write goes through
`write_rows` (open, one transaction, close) and the Dagster layer runs it in a pool of 1.
A short retry covers the moment another process holds the file's lock.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from ocog_lib.errors import InputError


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
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_LOCK_WAIT_S = 30.0
_T = TypeVar("_T")


def _with_lock_retry(fn: Callable[[], _T]) -> _T:
    """Retry while another process holds the file (DuckDB: one writer, no readers beside it)."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    delay = 0.05
    while True:
        try:
            return fn()
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


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
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in m.statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (?, ?)", [m.version, m.name]
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return schema_version(con)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


@contextmanager
def connect(db_path: str | Path, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the results file; a writable connection migrates it first."""
    db_path = Path(db_path)
    if read_only:
        if not db_path.exists():
            raise InputError(
                db_path,
                "no such DuckDB results file (materialize variant_stats, run `ocog demo` or a "
                "benchmark first, or point OCOG_DUCKDB at an existing file)",
            )
    else:
        db_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = _with_lock_retry(lambda: duckdb.connect(str(db_path), read_only=read_only))
    except duckdb.Error as exc:
        raise InputError(db_path, f"cannot open DuckDB file ({exc})") from exc
    try:
        if not read_only:
            migrate(con)
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
    rows: Sequence[dict[str, Any]],
    *,
    replace_where: dict[str, Any] | None = None,
) -> int:
    """The one writer: append `rows` to `table` in one transaction, returns rows written.

    replace_where={"dataset": "sample", "variant": "default"} first deletes the rows
    matching every pair, so re-materializing a partition replaces its rows. JSON columns
    take dicts (or JSON text) and are redacted; TIMESTAMPTZ columns take datetimes or
    epoch seconds.
    """
    if replace_where is not None and not replace_where:
        raise InputError("replace_where", "empty: it would delete the whole table")

    def run() -> int:
        with connect(db_path) as con:
            cols = table_columns(con, table)
            if not cols:
                known = ", ".join(m for m in _tables(con) if m != "schema_migrations")
                raise InputError(f"table {table!r}", f"not in the results schema ({known})")
            given = {k for r in rows for k in r}
            unknown = sorted(k for k in given | set(replace_where or {}) if k not in cols)
            if unknown:
                raise InputError(f"table {table!r}", f"unknown column(s) {unknown}")
            names = [c for c in cols if c in given]
            con.execute("BEGIN TRANSACTION")
            try:
                if replace_where:
                    where = " AND ".join(f'"{k}" = ?' for k in replace_where)
                    con.execute(
                        f'DELETE FROM "{table}" WHERE {where}', list(replace_where.values())
                    )
                if rows and names:
                    placeholders = ", ".join("?" for _ in names)
                    quoted = ", ".join(f'"{n}"' for n in names)
                    con.executemany(
                        f'INSERT INTO "{table}" ({quoted}) VALUES ({placeholders})',
                        [[_to_db(r.get(n), cols[n]) for n in names] for r in rows],
                    )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return len(rows)

    try:
        return _with_lock_retry(run)
    except duckdb.Error as exc:
        raise InputError(f"write to {table!r} in {db_path}", str(exc)) from exc


def _tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]


def _to_db(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype == "JSON":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InputError(value[:80], f"not JSON text ({exc})") from exc
        return json.dumps(redact(value), sort_keys=True, default=str)
    if dtype.startswith("TIMESTAMP") and isinstance(value, int | float):
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def query(db_path: str | Path, sql: str, params: Sequence[Any] | None = None
          ) -> tuple[list[str], list[tuple]]:
    """Run one SQL statement on the results file, read-only: (column names, rows)."""
    def run() -> tuple[list[str], list[tuple]]:
        with connect(db_path, read_only=True) as con:
            cur = con.execute(sql, list(params) if params is not None else None)
            columns = [d[0] for d in cur.description] if cur.description else []
            return columns, cur.fetchall() if columns else []

    try:
        return _with_lock_retry(run)
    except duckdb.Error as exc:
        raise InputError(f"query {sql.strip()!r}", str(exc).splitlines()[0]) from exc


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


# Key names whose values are secrets, and secret parts inside URLs.
_SECRET_KEY = re.compile(
    r"secret|passw|token|credential|(^|[_-])sas($|[_-])|api_?key|private_?key|access_?key"
    r"|session_?key|authorization|signature",
    re.IGNORECASE,
)
_SECRET_QUERY = re.compile(
    r"(?P<k>[?&](?:sig|x-amz-signature|x-amz-credential|x-amz-security-token|token)=)[^&#\s\"']*",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"(?P<k>[a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(?=@)", re.IGNORECASE)
MASK = "***"


def redact(value: Any) -> Any:
    """A copy of a config with secret values masked, so nothing secret reaches DuckDB."""
    if isinstance(value, dict):
        return {
            k: (MASK if _SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        value = _SECRET_QUERY.sub(lambda m: m.group("k") + MASK, value)
        return _URL_PASSWORD.sub(lambda m: m.group("k") + MASK, value)
    return value
