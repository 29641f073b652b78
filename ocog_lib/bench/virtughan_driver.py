"""Run VirtuGhan's tile computation and its export on given scenes, offline; print timings.

A script for VirtuGhan's own virtual environment (`bench.virtughan_peer` runs it with that
venv's python): it imports nothing of ocog. VirtuGhan finds its scenes by searching a STAC
API on the internet (`virtughan.stac.search_stac[_async]`, called from `virtughan.tile`
and `virtughan.engine`); here those two names are replaced by a function returning the
job's features (our stack's scenes, STAC-item shaped), and everything after the search
is VirtuGhan's own code. Reads one JSON job on stdin, writes one JSON line on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _features(job: dict):
    async def search_async(*_a, **_k):
        return [dict(f) for f in job["features"]]

    def search(*_a, **_k):
        return [dict(f) for f in job["features"]]

    return search, search_async


def tiles(job: dict) -> dict:
    """ms per tile per pass: `TileProcessor.cached_generate_tile` with its response cache
    off and its colormap (matplotlib) and PNG replaced by a 1-px image."""
    import asyncio

    from PIL import Image
    from virtughan import tile as vtile

    search, search_async = _features(job)
    vtile.search_stac_async = search_async
    vtile.TileProcessor.apply_colormap = staticmethod(lambda result, cmap: Image.new("L", (1, 1)))
    proc = vtile.TileProcessor()
    passes = []
    for _ in range(job["passes"]):
        ms = []
        for z, x, y in job["tiles"]:
            t0 = time.perf_counter()
            asyncio.run(proc.cached_generate_tile(
                x, y, z, job["start"], job["end"], 100, tuple(job["bands"]), job["formula"],
                latest=False, operation=job["operation"], cache_read=False, cache_write=False))
            ms.append((time.perf_counter() - t0) * 1e3)
        passes.append(ms)
    return {"ms": passes}


def export(job: dict) -> dict:
    """ms per run of `VirtughanProcessor.compute()` (reads, band math, the temporal
    reducer, its GeoTIFF, colormap PNG and time-series plot), and of its reads + band
    math alone (`_process_images`)."""
    from virtughan import engine

    search, _ = _features(job)
    engine.search_stac = search
    total, core, scenes = [], [], 0
    for i in range(job["repeats"]):
        out = os.path.join(job["out"], f"run{i}")
        with open(os.devnull, "w") as log:
            proc = engine.VirtughanProcessor(
                job["bbox"], job["start"], job["end"], 100, job["formula"], job["bands"],
                job["operation"], False, out, log_file=log, workers=job["workers"])
            inner = proc._process_images
            spent = []

            def timed(features, inner=inner, spent=spent):
                t0 = time.perf_counter()
                inner(features)
                spent.append((time.perf_counter() - t0) * 1e3)

            proc._process_images = timed
            t0 = time.perf_counter()
            proc.compute()
            total.append((time.perf_counter() - t0) * 1e3)
        core.append(spent[0] if spent else None)
        scenes = len(proc.result_list)
    return {"ms": total, "core_ms": core, "scenes": scenes,
            "output": os.path.join(job["out"], "run0", "custom_band_output_aggregate.tif")}


def main() -> None:
    job = json.loads(sys.stdin.read())
    out = {"tiles": tiles, "export": export}[job["kind"]](job)
    from importlib.metadata import version

    out["version"] = version("virtughan")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
