"""What a benchmark returns: typed rows and results, and their three outward forms.

A comparison (`local.compare`, `remote.compare_remote`) returns a `Comparison`, `ocog bench
stream` a `StreamRun`. Their outward forms are a contract: `to_dict()` is the `--json`
object (its keys and their order), `format_*` the printed tables, `result_rows_for_db` the
`stream_benchmarks` columns in DuckDB.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ocog_lib.bench.measure import Measurement
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings

LIMIT_LOADERS = ("decode_limit", "memory_limit")


@dataclass
class BenchRow:
    name: str
    loader: str  # "ocog", "reference", "decode_limit", "memory_limit"
    variant: str
    sampler: str
    samples_per_s: float
    mb_per_s: float
    startup_s: float | None = None
    cache_hit_rate: float | None = None
    batch_mix: float | None = None
    peak_rss_mb: float | None = None  # summed over the loader's processes
    peak_pss_mb: float | None = None  # the same, counting pages shared by workers once
    ratio_vs_reference_default: float | None = None
    ratio_vs_limit: float | None = None
    # against the cache-aware limit (bench.cache_limit): ocog rows of a local comparison
    ratio_vs_cache_limit: float | None = None
    data_wait_fraction: float | None = None
    repeats: list[float] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    content_hash: str | None = None  # of the bytes read: the variant's, or the package's

    @classmethod
    def from_repeats(
        cls, name: str, loader: str, variant: str, sampler: str,
        ms: list[Measurement], patch_bytes: int, config: dict, content_hash: str | None = None,
    ) -> BenchRow:  # fmt: skip
        """One row from a loader's interleaved repeats: medians of rates, peaks of memory."""
        sps = statistics.median(m.samples_per_s for m in ms)
        return cls(
            name=name,
            loader=loader,
            variant=variant,
            sampler=sampler,
            samples_per_s=sps,
            mb_per_s=sps * patch_bytes / 1e6,
            startup_s=statistics.median(m.startup_s for m in ms),
            cache_hit_rate=_median_or_none([m.cache_hit_rate for m in ms]),
            batch_mix=_median_or_none([m.batch_mix for m in ms]),
            peak_rss_mb=max(m.peak_rss_mb for m in ms),
            peak_pss_mb=_max_or_none([m.peak_pss_mb for m in ms]),
            repeats=[m.samples_per_s for m in ms],
            config={**config, **_decode_facts(ms)},
            content_hash=content_hash,
        )


def set_content_hashes(rows: list[BenchRow], hashes: dict[str, str]) -> None:
    """Each row without a content hash of its own (an HDF5 package's) gets its variant's."""
    for row in rows:
        if row.content_hash is None:
            row.content_hash = hashes.get(row.variant)


def _decode_facts(ms: list[Measurement]) -> dict:
    """Tile decodes per sample, the loader's and the fewest possible, where measured."""
    out = {}
    for key in ("decodes_per_sample", "min_decodes_per_sample"):
        value = _median_or_none([getattr(m, key) for m in ms])
        if value is not None:
            out[key] = value
    return out


def _median_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _max_or_none(vals: list[float | None]) -> float | None:
    vals = [v for v in vals if v is not None]
    return max(vals) if vals else None


@dataclass(frozen=True)
class Link:
    """A remote comparison's emulated WAN, and what the endpoint serves unshaped."""

    rtt_ms: float
    caps_mb_s: tuple[float, ...]
    endpoint_mb_s: float


@dataclass(frozen=True)
class Comparison:
    """One comparison run: its rows, and the facts every row shares."""

    run_id: str
    dataset: str
    decoded_gib: float  # of the default variant's scenes
    cache_mb: float
    config: Any  # the CompareConfig or RemoteCompareConfig as run
    rows: tuple[BenchRow, ...]
    files: dict[str, list[str]] | None = None  # local: scene names per variant
    link: Link | None = None  # remote: None for a local comparison
    skipped_peers: tuple[dict, ...] = ()  # peers asked for that could not run, and why

    @property
    def storage(self) -> str:
        return "local" if self.link is None else "remote"

    def to_dict(self) -> dict:
        """The `--json` object (keys in the order they have always had)."""
        head: dict[str, Any] = {"run_id": self.run_id, "dataset": self.dataset}
        if self.link is None:
            head |= {"storage": "local", "files": self.files, "decoded_gib": self.decoded_gib,
                     "cache_mb": self.cache_mb}  # fmt: skip
        else:
            head |= {
                "storage": "remote",
                "rtt_ms": self.link.rtt_ms,
                "caps_mb_s": list(self.link.caps_mb_s),
                "endpoint_mb_s": self.link.endpoint_mb_s,
                "cache_mb": self.cache_mb,
                "decoded_gib": self.decoded_gib,
            }
        out = {**head, "compare": asdict(self.config), "rows": [asdict(r) for r in self.rows]}
        if self.skipped_peers:
            out["skipped_peers"] = list(self.skipped_peers)
        return out

    def reference_default(self, cap: float | None = None) -> BenchRow | None:
        """The yardstick row (at `cap` for a remote comparison), if the run has one."""
        return next(
            (r for r in self.rows if r.name == "reference default"
             and (cap is None or r.config.get("cap_mb_s") == cap)),
            None,
        )  # fmt: skip

    def with_rows(self, rows: list[BenchRow]) -> Comparison:
        """The same run with `rows` appended, their ratio to the reference default set."""
        ref = self.reference_default()
        if ref is not None and ref.samples_per_s:
            rows = [
                replace(r, ratio_vs_reference_default=r.samples_per_s / ref.samples_per_s)
                for r in rows
            ]
        return replace(self, rows=(*self.rows, *rows))


@dataclass(frozen=True)
class StreamRow:
    """`ocog bench stream`'s one row (not a BenchRow: it reports samples and seconds)."""

    name: str
    samples_per_s: float
    mb_per_s: float
    startup_s: float
    cache_hit_rate: float | None
    batch_mix: float | None
    peak_rss_mb: float
    samples: int
    seconds: float
    config: dict
    variant: str
    sampler: str
    loader: str
    data_wait_fraction: float | None = None  # only with a consumer step time
    content_hash: str | None = None  # of the variant read (data.lineage)


@dataclass(frozen=True)
class StreamRun:
    run_id: str
    dataset: str
    row: StreamRow
    step_ms: float = 0.0

    def to_dict(self) -> dict:
        row = asdict(self.row)
        if row["data_wait_fraction"] is None:
            del row["data_wait_fraction"]
        return {"run_id": self.run_id, "dataset": self.dataset, "storage": "local", "rows": [row]}


def format_rows(rows: list[dict], extra: tuple[str, ...] = ()) -> str:
    """A fixed-width table of rows in their `--json` form; `extra`: config keys to add."""
    cols = [
        ("name", "name", "{}"),
        ("variant", "variant", "{}"),
        ("samples/s", "samples_per_s", "{:.0f}"),
        ("MB/s", "mb_per_s", "{:.0f}"),
        ("x ref", "ratio_vs_reference_default", "{:.2f}"),
        ("/ limit", "ratio_vs_limit", "{:.2f}"),
        ("/ cache lim", "ratio_vs_cache_limit", "{:.2f}"),
        ("hit", "cache_hit_rate", "{:.2f}"),
        ("mix", "batch_mix", "{:.2f}"),
        ("RSS MB", "peak_rss_mb", "{:.0f}"),
        ("PSS MB", "peak_pss_mb", "{:.0f}"),
        ("start s", "startup_s", "{:.2f}"),
        ("wait", "data_wait_fraction", "{:.2f}"),
    ]
    cols += [
        (
            k.replace("_per_sample", "/sample").replace("_", " "),
            k,
            "{:.2f}" if "utilization" in k else "{:.0f}",  # a fraction; bytes otherwise
        )
        for k in extra
    ]
    table = [[h for h, _, _ in cols]]
    for r in rows:
        vals = {**(r.get("config") or {}), **r}
        table.append(["-" if vals.get(k) is None else f.format(vals[k]) for _, k, f in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = [
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in table
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_comparison(result: Comparison) -> str:
    """What `ocog bench compare` prints: a line of shared facts, then the table(s)."""
    rows = result.to_dict()["rows"]
    if result.link is None:
        skipped = "".join(f"\npeer {p['name']} not run: {p['not_run_reason']}"
                          for p in result.skipped_peers)  # fmt: skip
        return (
            f"dataset {result.dataset}: {result.decoded_gib:.2f} GiB decoded per variant, "
            f"cache budget {result.cache_mb:.0f} MB for every loader\n" + format_rows(rows)
            + skipped
        )
    link = result.link
    out = [
        f"dataset {result.dataset} from S3 through the shaper: RTT {link.rtt_ms:g} ms, "
        f"caps {link.caps_mb_s} MB/s; the endpoint itself serves "
        f"{link.endpoint_mb_s:.0f} MB/s unshaped"
    ]
    extra = ("wire_bytes_per_sample", "link_utilization", "layout_limit_sps")
    for cap in link.caps_mb_s:
        at_cap = [r for r in rows if r["config"].get("cap_mb_s") == cap]
        out += [f"\ncap {cap:g} MB/s", format_rows(at_cap, extra=extra)]
    return "\n".join(out)


def format_stream(result: StreamRun) -> str:
    """What `ocog bench stream` prints: the row, and its data-wait when measured."""
    text = format_rows(result.to_dict()["rows"])
    if result.row.data_wait_fraction is not None:
        text += (
            f"\ndata-wait fraction at {result.step_ms:g} ms/step: "
            f"{result.row.data_wait_fraction:.3f}"
        )
    return text


def result_rows_for_db(
    result: Comparison | StreamRun, host: dict, git_sha: str | None
) -> list[dict]:
    """Flatten a compare/stream result into `stream_benchmarks` rows."""
    ts = time.time()
    d = result.to_dict()
    return [
        {
            "run_id": d["run_id"],
            "ts": ts,
            "name": r["name"],
            "dataset": d["dataset"],
            "variant": r["variant"],
            "storage": d.get("storage", "local"),
            "sampler": r["sampler"],
            "loader": r["loader"],
            "samples_per_s": r["samples_per_s"],
            "mb_per_s": r["mb_per_s"],
            "ratio_vs_reference_default": r.get("ratio_vs_reference_default"),
            "ratio_vs_limit": r.get("ratio_vs_limit"),
            "ratio_vs_cache_limit": r.get("ratio_vs_cache_limit"),
            "cache_hit_rate": r.get("cache_hit_rate"),
            "peak_rss_mb": r.get("peak_rss_mb"),
            "peak_pss_mb": r.get("peak_pss_mb"),
            "data_wait_fraction": r.get("data_wait_fraction"),
            "startup_s": r.get("startup_s"),
            "batch_mix": r.get("batch_mix"),
            "rtt_ms": None,
            "cap_mb_s": None,
            "config": json.dumps(r.get("config", {}), sort_keys=True, default=str),
            "host": json.dumps(host, sort_keys=True, default=str),
            "git_sha": git_sha,
            "content_hash": r.get("content_hash"),
        }
        for r in d["rows"]
    ]


def record(result: Comparison | StreamRun, settings: Settings) -> None:
    """Append a result's rows to DuckDB's `stream_benchmarks` (with this host and commit)."""
    from ocog_lib import results
    from ocog_lib.host import git_sha, host_facts

    rows = result_rows_for_db(result, host_facts(), git_sha())
    results.write_rows(settings.results_db, "stream_benchmarks", rows)


def check_remote_rows(result: Comparison) -> None:
    """Raise when a benchmark delivered failed reads: zero failed reads is the rule."""
    bad = [r.name for r in result.rows if (r.config or {}).get("failed_samples")]
    if bad:
        raise InputError("remote benchmark", f"failed reads in {bad}")
