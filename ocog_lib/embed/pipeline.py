"""One dataset's embeddings end to end, as `ocog embed` and the embeddings assets run them.

Each step is a function the Dagster assets call one by one; `embed_and_record` runs them in
order: the sample's files when a fresh clone lacks them (`ensure_sample`), the encoder
trained or continued (`embed.train.train_encoder`), every grid patch of the dataset
embedded and stored as the set (dataset, model_id) in `patch_embeddings`
(`embed_and_store`), the set's HNSW index brought up to date (`refresh_index`), and
precision@k / mAP@k of the encoder and both baselines on the held-out patches written to
`retrieval_quality` (`record_quality`).

torch, rasterio and GDAL are imported inside the steps: `ocog --help` imports this module
for its defaults and must stay fast.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ocog_lib.data.lineage import model_hash
from ocog_lib.embed.config import EmbedConfig
from ocog_lib.embed.vectors import NO_LABEL, EmbeddingSet
from ocog_lib.settings import Settings

if TYPE_CHECKING:
    from ocog_lib.embed.index import HnswConfig
    from ocog_lib.embed.quality import QualityResult
    from ocog_lib.embed.train import EncoderResult, ModelSink

QUALITY_TABLE = "retrieval_quality"
QUALITY_K = 10  # neighbours scored per held-out query
ProgressFn = Callable[[dict], None]


@dataclass(frozen=True)
class StoredEmbeddings:
    """A dataset embedded by one model and stored in the results file."""

    dataset: str
    model_id: str
    rows: int
    dim: int
    h3_resolution: int
    labelled: int  # rows with a label (a majority class)
    seconds: float  # embedding and storing
    fingerprint: str  # the stored set's content fingerprint (what its index is checked by)
    embeddings: EmbeddingSet = field(repr=False)

    @property
    def patches_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class IndexBuild:
    dataset: str
    model_id: str
    rows: int
    bytes: int
    seconds: float  # loading, extending or building, and saving
    path: Path  # the index file
    action: str  # loaded (already fresh), built, extended or rebuilt


@dataclass(frozen=True)
class QualityRun:
    run_id: str
    dataset: str
    model_id: str
    k: int
    results: tuple[QualityResult, ...]
    rows: tuple[dict, ...]  # as written to retrieval_quality

    @property
    def encoder_leads(self) -> bool:
        """Whether the trained encoder's mAP@k is above every baseline's."""
        trained = [r["map_at_k"] for r in self.rows if not r["baseline"]]
        return bool(trained) and all(min(trained) > r["map_at_k"]
                                     for r in self.rows if r["baseline"])  # fmt: skip


@dataclass(frozen=True)
class EmbedRun:
    encoder: EncoderResult
    embeddings: StoredEmbeddings
    index: IndexBuild
    quality: QualityRun
    prepared: tuple[str, ...] = ()  # what ensure_sample built first


def say_stage(progress: ProgressFn | None, stage: str, message: str) -> None:
    if progress is not None:
        progress({"event": "stage", "stage": stage, "message": message})


def ensure_sample(dataset: str, variant: str, settings: Settings, *,
                  progress: ProgressFn | None = None) -> tuple[str, ...]:  # fmt: skip
    """For the embedded sample only: its raw scenes and prepared files, then the variant,
    each written when missing (what a fresh clone lacks). Returns what was written."""
    from ocog_lib.data.locate import variant_written

    if dataset != "sample" or variant_written(dataset, variant, settings):
        return ()
    from ocog_lib.cog.profiles import resolve_profile
    from ocog_lib.cog.write import write_variant
    from ocog_lib.data.manifest import MANIFEST_NAME, DatasetManifest
    from ocog_lib.data.sample import build_raw_scene, prepare_sample, sample_tiles
    from ocog_lib.settings import bench_size_from_env

    profile = resolve_profile(variant)  # a typo fails before anything is written
    prepared, done = settings.prepared_dir(dataset), []
    if not (prepared / MANIFEST_NAME).exists():
        say_stage(progress, "prepare", f"preparing the sample in {prepared}")
        raws = {t: build_raw_scene(t, settings.raw_scene_path(t)) for t in sample_tiles()}
        prepare_sample(raws, prepared, bench_size=bench_size_from_env())
        done.append(f"prepared {prepared}")
    out = settings.variant_dir(dataset, profile.name)
    say_stage(progress, "prepare", f"writing variant {profile.name} to {out}")
    write_variant(DatasetManifest.load(prepared), profile, out, check=False)
    done.append(f"variant {out}")
    return tuple(done)


def _model_meta(model_path: str | Path) -> dict:
    from ocog_lib.embed.train import load_encoder

    return load_encoder(model_path, "cpu")[1]


def embed_and_store(model_path: str | Path, settings: Settings | None = None, *,
                    device: str = "auto", h3_resolution: int | None = None,
                    batch_size: int = 256) -> StoredEmbeddings:  # fmt: skip
    """Every grid patch of the model's dataset embedded, then stored as the set
    (dataset, model_id) in one transaction (its earlier rows replaced)."""
    import h3.api.basic_int as h3int

    from ocog_lib.embed.infer import embed_dataset
    from ocog_lib.embed.store import write_embeddings

    settings = settings or Settings.from_env()
    meta = _model_meta(model_path)
    t0 = time.perf_counter()
    es = embed_dataset(model_path, meta["dataset"], settings, h3_resolution=h3_resolution,
                       batch_size=batch_size, device=device)  # fmt: skip
    stored = write_embeddings(settings.results_db, meta["dataset"], meta["model_id"], es)
    res = h3int.get_resolution(int(es.cells[0])) if len(es) else -1
    return StoredEmbeddings(meta["dataset"], meta["model_id"], len(es), es.dim, int(res),
                            int((es.labels != NO_LABEL).sum()), time.perf_counter() - t0,
                            stored.fingerprint, es)  # fmt: skip


def refresh_index(settings: Settings, dataset: str, model_id: str | None = None, *,
                  config: HnswConfig | None = None) -> IndexBuild:
    """The stored set's HNSW index, fresh: loaded as it is, extended or rebuilt."""
    from ocog_lib import results
    from ocog_lib.embed.index import index_folder, open_index
    from ocog_lib.embed.store import pick_set, read_sets

    db = settings.results_db
    with results.connect(db, read_only=True) as con:
        stored = pick_set(read_sets(con), db, dataset, model_id)
        t0 = time.perf_counter()
        ann = open_index(con, db, stored, config=config)
        seconds = time.perf_counter() - t0
    path = index_folder(db, stored.dataset, stored.model_id) / ann.meta.file
    return IndexBuild(stored.dataset, stored.model_id, ann.meta.rows, path.stat().st_size,
                      seconds, path, ann.action)  # fmt: skip


def record_quality(model_path: str | Path, settings: Settings | None = None, *,
                   k: int = QUALITY_K, device: str = "auto") -> QualityRun:
    """precision@k and mAP@k of the encoder and both baselines, written to retrieval_quality
    (replacing an earlier measurement of the same dataset, model and k)."""
    from ocog_lib import results
    from ocog_lib.embed.quality import measure_quality, quality_rows
    from ocog_lib.host import git_sha, host_facts

    settings = settings or Settings.from_env()
    meta = _model_meta(model_path)
    measured = measure_quality(model_path, settings, k=k, device=device)
    run_id, now = uuid.uuid4().hex[:12], dt.datetime.now(dt.UTC)
    config = dict(meta.get("config", {}), variant=meta.get("variant"), steps=meta.get("steps"),
                  train_s=meta.get("seconds"), fingerprint=meta.get("fingerprint"),
                  model_path=str(model_path))  # fmt: skip
    host, sha = host_facts(), git_sha()
    content = model_hash(model_path)
    rows = tuple(dict(r, run_id=run_id, measured_at=now, config=config, git_sha=sha, host=host,
                      content_hash=content) for r in quality_rows(measured))  # fmt: skip
    results.write_rows(settings.results_db, QUALITY_TABLE, list(rows),
                       replace_where={"dataset": meta["dataset"], "model_id": meta["model_id"],
                                      "k": k})  # fmt: skip
    used_k = measured[0].k if measured else k
    return QualityRun(run_id, meta["dataset"], meta["model_id"], used_k, tuple(measured), rows)


def embed_and_record(cfg: EmbedConfig, settings: Settings | None = None, *,
                     store: ModelSink | None = None, k: int = QUALITY_K,
                     prepare: bool = True, progress: ProgressFn | None = None) -> EmbedRun:
    """Train (or continue) the encoder of `cfg`, embed and store the whole dataset, refresh
    its index and record its retrieval quality. `prepare`: write the sample's files first
    when they are missing."""
    from ocog_lib.embed.train import train_encoder

    settings = settings or Settings.from_env()
    prepared = ensure_sample(cfg.dataset, cfg.variant, settings, progress=progress) \
        if prepare else ()  # fmt: skip
    budget = f"{cfg.budget_s:g} s" + (f" or {cfg.steps} steps, whichever ends first"
                                      if cfg.steps else "")  # fmt: skip
    say_stage(progress, "train", f"training the encoder ({budget})")
    enc = train_encoder(cfg, settings, store=store, progress=progress)
    say_stage(progress, "embed", f"embedding {cfg.dataset} with model {enc.model_id}")
    stored = embed_and_store(enc.model_path, settings, device=cfg.device,
                             h3_resolution=cfg.h3_resolution)  # fmt: skip
    say_stage(progress, "index", f"indexing {stored.rows} vectors")
    index = refresh_index(settings, stored.dataset, stored.model_id)
    say_stage(progress, "quality", f"measuring retrieval quality (k={k})")
    quality = record_quality(enc.model_path, settings, k=k, device=cfg.device)
    return EmbedRun(enc, stored, index, quality, prepared)
