"""The IO manager for the few assets whose return value feeds a downstream input.

Dagster's default FilesystemIOManager pickles the value under $DAGSTER_HOME/storage and
sets the materialization's `path` to that pickle, over the asset's own `path` (the IO
manager's metadata is applied last). ocog's data lives in ocog's folders, and `path`
must say where: this one stores and loads exactly like the default (same files, so values
stored before still load) but records the pickle as `stored_value`, leaving `path` alone.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

STORED_VALUE = "stored_value"


class _PathRenamed:
    """The output context, with the IO manager's `path` entry written as `stored_value`."""

    def __init__(self, context: dg.OutputContext):
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def add_output_metadata(self, metadata: dict[str, Any]) -> None:
        renamed = {STORED_VALUE if k == "path" else k: v for k, v in metadata.items()}
        self._context.add_output_metadata(renamed)


class _PickledValues(PickledObjectFilesystemIOManager):
    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        super().handle_output(_PathRenamed(context), obj)  # type: ignore[arg-type]


class OcogValueIOManager(dg.ConfigurableIOManagerFactory):
    """Pickled return values under `base_dir` (default: the instance's storage folder)."""

    base_dir: str | None = None

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        base = self.base_dir or context.instance.storage_directory()  # type: ignore[union-attr]
        return _PickledValues(base_dir=base)
