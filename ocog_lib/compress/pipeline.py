"""One dataset's compressed archive end to end, as `ocog compress` and the compression
assets run it.

`compress_and_record` runs the steps in order: the sample's files when a fresh clone
lacks them (`embed.pipeline.ensure_sample`), the codec and hash head trained or
continued (`train.train_codec`), every grid patch coded, hashed from its bitstream and
stored (`archive.build_archive`), and the hash codes' retrieval quality on the held-out
patches written to `retrieval_quality` (`record_hash_quality`), beside the embeddings'
rows: methods "hash" (the head's codes, dim = bits) and "random_codes" (the baseline),
through embed's own row builder (`embed.quality.quality_rows`), decorated as
`embed.pipeline.record_quality` decorates its rows. A new measurement of the same
(dataset, model_id, k) replaces the old.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path

from ocog_lib import results
from ocog_lib.compress.archive import STATS_PATCHES, ArchiveBuild, build_archive
from ocog_lib.compress.bitstream import encode
from ocog_lib.compress.config import CompressConfig
from ocog_lib.compress.quality import HASH, RANDOM, HashQuality, hash_quality, held_out_patches
from ocog_lib.compress.train import CompressResult, ProgressFn, load_codec, train_codec
from ocog_lib.data.lineage import model_hash
from ocog_lib.embed.pipeline import QUALITY_K, QUALITY_TABLE, ensure_sample, say_stage
from ocog_lib.embed.quality import QualityResult, quality_rows
from ocog_lib.embed.train import normalised
from ocog_lib.settings import Settings
from ocog_lib.stream.device import pick_device


@dataclass(frozen=True)
class HashQualityRun:
    run_id: str
    dataset: str
    model_id: str
    codec_id: str
    k: int
    results: tuple[HashQuality, ...]  # the head's codes, then random codes
    rows: tuple[dict, ...]  # as written to retrieval_quality

    @property
    def hash_leads(self) -> bool:
        """Whether the head's codes' mAP@k is above random codes'."""
        by = {r.method: r.map_at_k for r in self.results}
        return by[HASH] > by[RANDOM]


@dataclass(frozen=True)
class CompressRun:
    training: CompressResult
    archive: ArchiveBuild
    quality: HashQualityRun
    prepared: tuple[str, ...] = ()  # what ensure_sample built first


def hash_rows(measured: list[HashQuality], meta: dict) -> list[dict]:
    """retrieval_quality rows of the hash measurements, by embed's builder: dim = bits,
    baseline only for random codes."""
    as_embed = [QualityResult(q.method, q.bits, q.k, q.precision_at_k, q.map_at_k,
                              q.n_queries, meta["model_id"], meta["dataset"])
                for q in measured]  # fmt: skip
    return [dict(r, baseline=r["method"] == RANDOM) for r in quality_rows(as_embed)]


def decorated(rows: list[dict], meta: dict, model_path: str | Path) -> tuple[dict, ...]:
    """The rows with the run's id, time, config, git sha and host (as embed's rows)."""
    from ocog_lib.host import git_sha, host_facts

    run_id, now = uuid.uuid4().hex[:12], dt.datetime.now(dt.UTC)
    config = dict(meta.get("config", {}), variant=meta.get("variant"), steps=meta.get("steps"),
                  train_s=meta.get("seconds"), fingerprint=meta.get("fingerprint"),
                  model_path=str(model_path), codec_id=meta.get("codec_id"))  # fmt: skip
    host, sha = host_facts(), git_sha()
    content = model_hash(model_path)
    return tuple(dict(r, run_id=run_id, measured_at=now, config=config, git_sha=sha, host=host,
                      content_hash=content) for r in rows)  # fmt: skip


def record_hash_quality(model_path: str | Path, settings: Settings | None = None, *,
                        k: int = QUALITY_K, device: str = "cpu") -> HashQualityRun:
    """precision@k and mAP@k of the head's codes (from the held-out patches' bitstreams)
    and of random codes, written to retrieval_quality (replacing an earlier measurement of
    the same dataset, model and k)."""
    settings = settings or Settings.from_env()
    loaded = load_codec(model_path, pick_device(device))
    meta = loaded.meta
    data = held_out_patches(meta, settings)
    streams = encode(loaded.codec, normalised(data.raw, meta["norm"]))
    measured = hash_quality(loaded.codec, loaded.head, streams, tuple(data.raw.shape[1:]),
                            data.labels, k, int(meta["config"]["seed"]))  # fmt: skip
    rows = decorated(hash_rows(measured, meta), meta, model_path)
    results.write_rows(settings.results_db, QUALITY_TABLE, list(rows),
                       replace_where={"dataset": meta["dataset"], "model_id": meta["model_id"],
                                      "k": k})  # fmt: skip
    return HashQualityRun(rows[0]["run_id"], meta["dataset"], meta["model_id"],
                          str(meta["codec_id"]), measured[0].k, tuple(measured), rows)


def compress_and_record(cfg: CompressConfig, settings: Settings | None = None, *,
                        k: int = QUALITY_K, prepare: bool = True,
                        stats_patches: int = STATS_PATCHES,
                        progress: ProgressFn | None = None) -> CompressRun:  # fmt: skip
    """Train (or continue) the codec of `cfg`, archive the whole dataset and record its
    hash retrieval quality. `prepare`: write the sample's files first when missing;
    `stats_patches`: the archive's distortion and JPEG 2000 sample (`build_archive`)."""
    settings = settings or Settings.from_env()
    prepared = ensure_sample(cfg.dataset, cfg.variant, settings, progress=progress) \
        if prepare else ()  # fmt: skip
    budget = f"{cfg.budget_s:g} s" + (f" or {cfg.steps} steps, whichever ends first"
                                      if cfg.steps else "")  # fmt: skip
    say_stage(progress, "train", f"training the codec ({budget})")
    trained = train_codec(cfg, settings, progress=progress)
    say_stage(progress, "archive", f"archiving {cfg.dataset} with codec {trained.codec_id}")
    built = build_archive(trained.model_path, settings, device=cfg.device,
                          stats_patches=stats_patches, progress=progress)  # fmt: skip
    say_stage(progress, "quality", f"measuring hash retrieval quality (k={k})")
    quality = record_hash_quality(trained.model_path, settings, k=k, device=cfg.device)
    return CompressRun(trained, built, quality, prepared)
