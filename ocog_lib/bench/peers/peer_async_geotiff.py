"""async-geotiff (PyPI `async-geotiff`, Development Seed): Rust (async-tiff) COG reads.

Its documented use: open each file once (`GeoTIFF.open(path, store=LocalStore(...))`, the
header read up front), then `await geotiff.read(window=Window(...))` per window, many at
once; a read fetches the window's tiles in one `fetch_tiles` call (coalesced ranges) and
decodes them on async-tiff's Rust thread pool, off the event loop. Here: every window of a
batch gathered in one `asyncio.gather` (images and masks together), `INFLIGHT` batches
submitted ahead, on an event loop in a thread of its own so reads go on while the consumer
holds a batch; the batch is one numpy array of the file's dtype (`torch.from_numpy` would
wrap it without a copy; its venv has no torch). All bands, exactly ocog's windows. It has
no tile cache (a tile two windows share is read and decoded twice; only the OS page cache
helps), so the comparison's cache budget does not apply. One process; its Rust pools size
themselves (the driver records the threads it saw). Venv of its own, pinned below.
"""

from __future__ import annotations

NAME = "async-geotiff"
VERSION = "0.5.1"
PACKAGES = (f"async-geotiff=={VERSION}", "async-tiff==0.7.2", "numpy==2.4.6")
PYTHON = ((3, 11), (3, 99))
USES_GDAL = False
SAMPLERS = ("random", "block", "grid")
SAMPLER_AS_RUN = "ocog's windows"
INFLIGHT = 2
IMPORTS = ("async_geotiff", "async_tiff.store", "numpy")


CONCURRENCY = (
    "one process, asyncio: a batch's windows gathered at once, 2 batches in flight; "
    "decodes on async-tiff's Rust thread pool"
)
CACHE = "none: async-geotiff has no tile cache (OS page cache only)"


async def _open_all(paths: list[str]) -> list:
    import asyncio
    import os

    from async_geotiff import GeoTIFF
    from async_tiff.store import LocalStore

    stores: dict[str, object] = {}
    for p in paths:
        folder = os.path.dirname(os.path.abspath(p))
        stores.setdefault(folder, LocalStore(folder))
    return list(await asyncio.gather(*(
        GeoTIFF.open(os.path.basename(p), store=stores[os.path.dirname(os.path.abspath(p))])
        for p in paths)))  # fmt: skip


async def _read_batch(images: list, masks: list, wins, patch: int):
    import asyncio

    import numpy as np
    from async_geotiff import Window
    from peer_kit import stack

    def reads(tiffs):
        return [tiffs[int(f)].read(window=Window(col_off=int(c), row_off=int(r), width=patch,
                                                 height=patch)) for f, r, c in wins]  # fmt: skip

    got = await asyncio.gather(*reads(images), *(reads(masks) if masks else ()))
    image = stack([np.asarray(a.data) for a in got[: len(wins)]])
    if not masks:
        return image
    return image, stack([np.asarray(a.data)[:1] for a in got[len(wins) :]])


class _Batches:
    """Batches in order from a loop thread, `INFLIGHT` submitted ahead; close() stops it."""

    def __init__(self, job: dict):
        import asyncio
        import threading

        from peer_kit import windows

        self.job = job
        self.wins = windows(job)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.images = self._run(_open_all(job["images"]))
        self.masks = self._run(_open_all(job["masks"])) if job["masks"] else []

    def _run(self, coro):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __iter__(self):
        import asyncio
        from collections import deque

        from peer_kit import batch_slices

        pending: deque = deque()
        for r in batch_slices(len(self.wins), self.job["batch_size"]):
            coro = _read_batch(self.images, self.masks, self.wins[r.start : r.stop],
                               self.job["patch_size"])  # fmt: skip
            pending.append(asyncio.run_coroutine_threadsafe(coro, self.loop))
            if len(pending) >= INFLIGHT:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        """Cancel the reads still in flight, then stop the loop thread."""
        import asyncio

        async def cancel() -> None:
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            self._run(cancel())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)


def open_loader(job: dict):
    from importlib.metadata import version

    return _Batches(job), {"async_geotiff": version("async-geotiff"),
                           "async_tiff": version("async-tiff")}  # fmt: skip
