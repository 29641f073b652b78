"""Resources: where files live (OcogPaths) and the DuckDB results file (ResultsStore)."""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from ocog_lib import results
from ocog_lib.settings import Settings


class OcogPaths(dg.ConfigurableResource):
    """Data folder and results file; unset fields fall back to Settings.from_env() at run time."""

    data_dir: str | None = None
    results_db: str | None = None

    def settings(self) -> Settings:
        env = Settings.from_env()
        data_dir = Path(self.data_dir).resolve() if self.data_dir else env.data_dir
        if self.results_db:
            db = Path(self.results_db).resolve()
        elif self.data_dir and not os.environ.get("OCOG_DUCKDB"):
            db = data_dir / "ocog.duckdb"
        else:
            db = env.results_db
        return Settings(data_dir=data_dir, results_db=db)


class ResultsStore(dg.ConfigurableResource):
    """The one writer path into DuckDB; assets that write use the `duckdb_writer` pool."""

    paths: OcogPaths

    @property
    def db_path(self) -> Path:
        return self.paths.settings().results_db

    def write_rows(self, table: str, rows: Sequence[dict[str, Any]], *,
                   replace_where: dict[str, Any] | None = None) -> int:
        return results.write_rows(self.db_path, table, rows, replace_where=replace_where)

    def query(self, sql: str, params: Sequence[Any] | None = None
              ) -> tuple[list[str], list[tuple]]:
        return results.query(self.db_path, sql, params)


def _env(name: str) -> dg.EnvVar | None:
    """EnvVar where the variable is set (shown as such in the UI), else the Settings default."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def default_resources() -> dict[str, dg.ConfigurableResource]:
    from ocog_assets.defs.remote.resources import object_store_from_env  # imports OcogPaths

    paths = OcogPaths(data_dir=_env("OCOG_DATA_DIR"), results_db=_env("OCOG_DUCKDB"))
    return {"paths": paths, "results": ResultsStore(paths=paths),
            "object_store": object_store_from_env(paths)}
