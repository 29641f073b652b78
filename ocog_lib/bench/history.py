"""Has throughput dropped? One run compared with the previous run on the same host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ocog_lib import results


@dataclass(frozen=True)
class Regression:
    name: str
    variant: str
    previous: float
    current: float

    @property
    def drop(self) -> float:
        return 1.0 - self.current / self.previous if self.previous else 0.0


def previous_run(db: Path, dataset: str, variant: str, run_id: str, hostname: str) -> str | None:
    """The last run before `run_id` that measured this dataset|variant on this host."""
    _, rows = results.query(
        db,
        "SELECT run_id FROM stream_benchmarks "
        "WHERE dataset = ? AND variant = ? AND loader = 'ocog' AND run_id <> ? "
        "AND json_extract_string(host, '$.hostname') = ? "
        "AND ts < (SELECT min(ts) FROM stream_benchmarks WHERE run_id = ?) "
        "GROUP BY run_id ORDER BY max(ts) DESC LIMIT 1",
        [dataset, variant, run_id, hostname, run_id],
    )
    return rows[0][0] if rows else None


def regressions(
    db: Path, dataset: str, variant: str, run_id: str, hostname: str, threshold: float = 0.2
) -> tuple[str | None, list[Regression]]:
    """ocog rows of `run_id` whose samples/s fell more than `threshold` below the last run."""
    before = previous_run(db, dataset, variant, run_id, hostname)
    if before is None:
        return None, []
    _, rows = results.query(
        db,
        "SELECT cur.name, cur.variant, prev.samples_per_s, cur.samples_per_s "
        "FROM stream_benchmarks cur JOIN stream_benchmarks prev "
        "ON cur.name = prev.name AND cur.variant = prev.variant "
        "WHERE cur.run_id = ? AND prev.run_id = ? AND cur.loader = 'ocog' "
        "AND cur.dataset = ? AND cur.variant = ?",
        [run_id, before, dataset, variant],
    )
    found = [Regression(n, v, float(p), float(c)) for n, v, p, c in rows]
    return before, [r for r in found if r.drop > threshold]
