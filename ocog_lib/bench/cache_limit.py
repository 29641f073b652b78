"""The cache-aware limit: the fewest tile decodes any loader needs, times their cost.

The decode limit (`limits.decode_limit`) assumes no cache, so an engine that caches passes
1.0 against it and the ratio stops saying how close it is to ideal. This limit knows the
cache: for the same windows in the same order and the same cache budget, Belady's rule
with full knowledge of the future gives the fewest decodes any demand-fetching loader
can make. A batch is served as a unit, as the engine serves it: its cached tiles are
handed over, its missing ones decoded once, and then the cache keeps the tiles the next
batches need soonest (a tile needed never again, or later than every cached one, is not
kept); the batch itself holds what it was handed, so within a batch nothing is decoded
twice. Decoded bytes bound the cache, as in the engine; a tile larger than the budget is
never kept. With tiles of one size (images without masks) the count is the exact minimum;
with masks (smaller tiles) it is Belady's furthest-next-use count over bytes, the
standard stand-in (the exact minimum with sizes is NP-hard).

limit samples/s = decoded tiles/s on all cores (the decode limit's rate) / (fewest decodes
per sample). Copying the patch out is not in it: with much reuse the limit is far above
what any loader's memory traffic allows, and the copy-bound figure rides beside it.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

NEVER = 1 << 62


@dataclass(frozen=True)
class DecodeCount:
    """Tile references of a window sequence and the fewest decodes that serve them."""

    refs: int  # tile references (unique per batch)
    min_decodes: int
    samples: int

    @property
    def decodes_per_sample(self) -> float:
        return self.min_decodes / self.samples if self.samples else 0.0


def min_decodes(batches: Iterable[Sequence[Hashable]], nbytes: dict[Hashable, int] | int,
                budget_bytes: int, in_flight: int = 1) -> tuple[int, int]:  # fmt: skip
    """(references, fewest decodes) for batches of tile keys under a byte budget.

    A batch is served at once, as the engine serves it: its cached tiles are handed over,
    its missing ones decoded, then the cache keeps what is needed soonest (by batch).
    `in_flight`: batches assembled at once (the engine's prefetch); a tile one of the
    previous `in_flight - 1` batches holds is handed over without a decode, outside the
    budget, as the engine hands over a tile still being decoded for an earlier batch.
    `nbytes`: each key's decoded bytes, or one size for every key."""
    plan = [list(dict.fromkeys(keys)) for keys in batches]  # unique within a batch
    nxt = _next_uses(plan, in_flight)
    size = (lambda _k: nbytes) if isinstance(nbytes, int) else nbytes.__getitem__
    cached: dict[Hashable, int] = {}  # key -> the next batch that needs it
    heap: list[tuple[int, int, Hashable]] = []  # (-next use, tiebreak, key), lazily pruned
    held: dict[Hashable, int] = {}  # key -> the last batch that holds it
    used = decodes = refs = tick = 0
    for i, (keys, uses) in enumerate(zip(plan, nxt, strict=True)):
        refs += len(keys)
        for key, use in zip(keys, uses, strict=True):
            was_held = held.get(key, -in_flight) > i - in_flight
            held[key] = i
            if key in cached:
                if use == NEVER:  # its last use: it goes now
                    del cached[key]
                    used -= size(key)
                    continue
            else:
                decodes += not was_held
                if use == NEVER or size(key) > budget_bytes:
                    continue  # never needed again, or never fits: not kept
                used += size(key)
            cached[key] = use
            tick += 1
            heapq.heappush(heap, (-use, tick, key))
        while used > budget_bytes:  # the furthest next use goes (maybe a new tile itself)
            neg, _, victim = heapq.heappop(heap)
            if cached.get(victim) == -neg:
                del cached[victim]
                used -= size(victim)
    return refs, decodes


def _next_uses(plan: list[list[Hashable]], in_flight: int) -> list[list[int]]:
    """For each key of each batch, the next batch that needs it from the cache (NEVER if
    none): a use fewer than `in_flight` batches after the previous one is served by the
    batch still holding it, so the cache need is the first use past such a chain."""
    out: list[list[int]] = [[] for _ in plan]
    last: dict[Hashable, tuple[int, int]] = {}  # key -> (its next use, that use's need)
    for i in range(len(plan) - 1, -1, -1):
        needs = []
        for k in plan[i]:
            use, need = last.get(k, (NEVER, NEVER))
            needs.append(use if use == NEVER or use - i >= in_flight else need)
        out[i] = needs
        for k, need in zip(plan[i], needs, strict=True):
            last[k] = (i, need)
    return out


def count_decodes(per_process: Iterable[tuple[Iterable[Sequence[Hashable]], int]],
                  nbytes: dict[Hashable, int] | int, budget_bytes: int,
                  in_flight: int = 1) -> DecodeCount:  # fmt: skip
    """Summed over processes, each with its own cache: (batches of keys, samples) each."""
    refs = decodes = samples = 0
    for batches, n in per_process:
        r, d = min_decodes(batches, nbytes, budget_bytes, in_flight)
        refs, decodes, samples = refs + r, decodes + d, samples + n
    return DecodeCount(refs, decodes, samples)


def cache_limit_sps(tiles_per_s: float, count: DecodeCount) -> float | None:
    """Samples/s if the fewest decodes were the only work (None: no decode needed)."""
    if not count.min_decodes or not tiles_per_s:
        return None
    return tiles_per_s / count.decodes_per_sample


def stream_decodes(stream, batches: int | None = None, in_flight: int = 1) -> DecodeCount:
    """The fewest decodes for the first `batches` batches a `CogStream` delivers (None: the
    epoch), each of its processes with its own cache of the stream's budget.

    `in_flight` 1 is the limit as defined (the budget holds every tile kept between
    batches). The engine also hands a batch tiles still being decoded for one of the
    `prefetch` batches before it, outside its budget; `in_flight=prefetch` counts those as
    free too, a bound the engine can never beat (the tests hold it to that)."""
    chunks = stream.batch_windows()
    if batches is not None:
        chunks = chunks[:batches]
    workers = max(1, stream.cfg.workers)
    budget = int(stream.cfg.cache_mb * 1024 * 1024)
    shares, sizes = [], {}
    for w in range(workers):
        keys = [stream.tile_keys(c) for c in stream.worker_batches(chunks, w, workers)]
        for k in {k for batch in keys for k in batch} - sizes.keys():
            sizes[k] = stream.tile_nbytes(k)
        samples = sum(len(c) for c in stream.worker_batches(chunks, w, workers))
        shares.append((keys, samples))
    return count_decodes(shares, sizes, budget, in_flight)
