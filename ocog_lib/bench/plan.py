"""A comparison's plan: one named record per loader configuration, run interleaved.

Every configuration of a comparison (local or remote) is a `PlannedRun`; `run_interleaved`
measures the whole plan once per repeat, in order, so drift on a shared machine (a
neighbour, thermal throttling) hits every row alike, and each row reports the median of
its repeats (see docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ocog_lib.bench.measure import Measurement
from ocog_lib.bench.rows import BenchRow


@dataclass(frozen=True)
class PlannedRun:
    """One row of a comparison before it is measured: what it is, and how to measure it once
    (`measure` builds a fresh loader each call: cold caches, new workers)."""

    name: str  # the row's name, e.g. "ocog block reuse x8"
    loader: str  # "ocog", "reference", "hdf5"
    variant: str
    sampler: str
    measure: Callable[[], Measurement]
    patch_bytes: int  # decoded bytes of one sample (for MB/s)
    config: dict = field(default_factory=dict)
    title: str = ""  # progress text; default "<name> on <variant>"
    content_hash: str | None = None  # of what it reads when not its variant (a package)

    @property
    def progress(self) -> str:
        return self.title or f"{self.name} on {self.variant}"

    def row(self, ms: list[Measurement], config: dict | None = None) -> BenchRow:
        """The row of this run's repeats (`config`: the row's, default the plan's)."""
        return BenchRow.from_repeats(
            self.name, self.loader, self.variant, self.sampler, ms, self.patch_bytes,
            self.config if config is None else config, self.content_hash,
        )  # fmt: skip


def run_interleaved(
    plan: Sequence[PlannedRun],
    repeats: int,
    say: Callable[[str], None],
    prefix: str = "",
) -> list[list[Measurement]]:
    """Each run's measurements, repeat after repeat over the whole plan."""
    results: list[list[Measurement]] = [[] for _ in plan]
    for r in range(repeats):
        for run, out in zip(plan, results, strict=True):
            say(f"{prefix}repeat {r + 1}/{repeats}: {run.progress}")
            out.append(run.measure())
    return results
