"""rasteret (PyPI `rasteret`, Terrafloww): index-first COG reads from a Parquet header index.

Its model: parse every COG header once into a Collection (`build_from_table(...,
enrich_cog=True)`: per band, the tile offsets, byte counts and layout as Parquet columns),
then read pixels from that index without opening files again. Its documented path for a
chip dataset is `Collection.read_window(record_ids=[id], bounds=..., res=..., bands=...)`
per chip (its README: "Build a downstream TorchGeo dataset: Collection.to_table(...) +
Collection.read_window(...)"); a call gathers the byte ranges of all its bands at once
(up to `max_concurrent`=50 requests, ranges within 1 KiB merged) and decodes with
imagecodecs in the event loop's thread pool. Here every ocog window becomes the exact
pixel bounds in the file's CRS at its native resolution (no resampling: bit-equal to a
rasterio read), one record per file, bands b1..bN mapped to the file's samples. Its view
of a multi-band tile is one band at a time: a 4-band pixel-interleaved tile is fetched and
decoded once per band. The mask is a second collection read the same way. It has no tile
cache, so the comparison's cache budget does not apply.

Concurrency as a DataLoader would give it, without torch (its venv has none, and PyPI's
Linux torch is a CUDA build): one spawned worker process per core, each opening the
Collection itself and reading a whole batch, 2 batches per worker in flight, batches
returned in order through multiprocessing (pickled). The index is built on the first run
into the job's work folder and reused after (rasteret's own cache check), its build time
part of `open_s`. Python >= 3.12, so its venv is made from such an interpreter.
"""

from __future__ import annotations

NAME = "rasteret"
VERSION = "0.4.1"
PACKAGES = (f"rasteret=={VERSION}",)
PYTHON = ((3, 12), (3, 14))
USES_GDAL = False
SAMPLERS = ("random", "block", "grid")
SAMPLER_AS_RUN = "ocog's windows"
PREFETCH = 2
IMPORTS = ("rasteret", "pyarrow", "rasterio", "shapely")

_STATE: dict = {}  # per worker process: the collections and the files' transforms


CONCURRENCY = (
    "{workers} spawned worker processes, a batch each, 2 batches per worker in "
    "flight; read_window per window (its max_concurrent 50 within a call)"
)
CACHE = "none: rasteret has no tile cache (OS page cache only); headers from its index"


def _table(paths: list[str], prefix: str):
    """The record table rasteret builds a Collection from: one row per file."""
    import pyarrow as pa
    import rasterio
    import shapely
    from rasterio.warp import transform_bounds

    rows = []
    for i, p in enumerate(paths):
        with rasterio.open(p) as src:
            box = shapely.box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds)).wkb
            rows.append((f"{prefix}{i}", box, p, src.crs.to_epsg(), src.count,
                         tuple(src.transform)[:6]))  # fmt: skip
    table = pa.table({"id": [r[0] for r in rows],
                      "datetime": ["2024-01-01T00:00:00Z"] * len(rows),
                      "geometry": [r[1] for r in rows], "href": [r[2] for r in rows],
                      "proj:epsg": [r[3] for r in rows]})  # fmt: skip
    return table, rows[0][4], [r[5] for r in rows]


def _build(paths: list[str], prefix: str, folder: str) -> dict:
    """The Collection's folder (built once, then rasteret's cache hit), bands, transforms."""
    import os

    import rasteret

    table, count, transforms = _table(paths, prefix)
    bands = {f"b{j + 1}": j for j in range(count)}
    name = f"ocog_{prefix}"
    rasteret.build_from_table(table, name=name, workspace_dir=folder, href_column="href",
                              band_index_map=bands, enrich_cog=True)  # fmt: skip
    return {"path": os.path.join(folder, f"{name}_records"), "bands": list(bands),
            "transforms": transforms, "prefix": prefix}  # fmt: skip


def _init(specs: list[dict], patch: int) -> None:
    import rasteret

    _STATE["sets"] = [(rasteret.load(s["path"]), s) for s in specs]
    _STATE["patch"] = patch


def _read(collection, spec: dict, f: int, row: int, col: int, patch: int):
    a, _, c, _, e, fy = spec["transforms"][f]
    x0, y1 = c + col * a, fy + row * e
    bounds = (x0, y1 + patch * e, x0 + patch * a, y1)
    return collection.read_window(record_ids=[f"{spec['prefix']}{f}"], bounds=bounds,
                                  res=(abs(a), abs(e)), bands=spec["bands"])  # fmt: skip


def read_batch(wins) -> tuple:
    """One batch in a worker: (images,) or (images, masks), each (n, C, p, p)."""
    from peer_kit import stack

    p = _STATE["patch"]
    out = []
    for collection, spec in _STATE["sets"]:
        parts = [_read(collection, spec, int(f), int(r), int(c), p) for f, r, c in wins]
        arr = stack(parts)
        out.append(arr[:, :1] if spec["prefix"] == "m" else arr)
    return tuple(out)


def open_loader(job: dict):
    import os
    from importlib.metadata import version

    from peer_kit import batch_slices, ordered_pool, windows

    folder = os.path.join(job["work_dir"], "index")
    specs = [_build(job["images"], "f", folder)]
    if job["masks"]:
        specs.append(_build(job["masks"], "m", folder))
    wins = windows(job)
    tasks = [wins[r.start : r.stop] for r in batch_slices(len(wins), job["batch_size"])]
    workers = max(1, job["workers"])
    batches = ordered_pool(tasks, read_batch, workers=workers, inflight=workers * PREFETCH,
                           initializer=_init, initargs=(specs, job["patch_size"]))  # fmt: skip
    return _Batches(batches), {"rasteret": version("rasteret"), "workers": workers,
                               "index": folder}  # fmt: skip


class _Batches:
    def __init__(self, gen):
        self.gen = gen

    def __iter__(self):
        for batch in self.gen:
            yield batch if len(batch) > 1 else batch[0]

    def close(self) -> None:
        self.gen.close()
