"""The compressed archive on the tiny sample: every grid patch stored once, placed as the
embeddings place it, its bitstream what `bitstream.encode` writes and its code what
`codes_from_bitstreams` reads from it; the summary against the baselines; a rebuild
replaces; every refusal names its input.

One `compress_and_record` run (train 4 steps, archive, hash quality) serves this module,
`test_similar` and `test_pipeline` (`archived_run`, built once a process); a test that
writes to the results file writes to its own copy."""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest
import torch

from ocog_lib import results
from ocog_lib.compress import archive as arch
from ocog_lib.compress.bitstream import decode, encode
from ocog_lib.compress.hashing import codes_from_bitstreams
from ocog_lib.compress.metrics import bits_per_pixel, psnr, to_dn
from ocog_lib.compress.pipeline import CompressRun, compress_and_record
from ocog_lib.compress.train import LoadedCodec, load_codec, train_codec
from ocog_lib.data.lineage import model_hash
from ocog_lib.embed.infer import _assemble, patch_labels, raster_place
from ocog_lib.embed.train import dataset_files, normalised, read_patches
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from tests.ocog_lib.compress.test_train import TINY

CFG = dataclasses.replace(TINY, steps=4, max_val_patches=64)
STATS = 48  # the summary's distortion / JPEG 2000 sample: capped below the 512 patches
SHAPE = (4, 32, 32)


@dataclass(frozen=True)
class Archived:
    settings: Settings
    run: CompressRun
    loaded: LoadedCodec
    stages: tuple[str, ...]

    @property
    def db(self) -> Path:
        return self.settings.results_db


_BUILT: dict[str, Archived] = {}


def archived_run(train_variants: Settings, tmp_path_factory) -> Archived:
    """The tiny sample's archive, built once a process by the whole pipeline."""
    key = str(train_variants.data_dir)
    if key not in _BUILT:
        torch.set_num_threads(1)
        root = tmp_path_factory.mktemp("compress_archive")
        (root / "data").mkdir()
        (root / "data" / "variants").symlink_to(train_variants.data_dir / "variants")
        settings = Settings(data_dir=root / "data", results_db=root / "ocog.duckdb")
        events: list[dict] = []
        run = compress_and_record(CFG, settings, k=5, stats_patches=STATS,
                                  progress=events.append)  # fmt: skip
        stages = tuple(e["stage"] for e in events if e["event"] == "stage")
        _BUILT[key] = Archived(settings, run, load_codec(run.training.model_path), stages)
    return _BUILT[key]


def copy_db(a: Archived, tmp_path: Path) -> Settings:
    """Settings over the same data with a copy of the results file, to write to."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(a.db, db)
    return Settings(data_dir=a.settings.data_dir, results_db=db)


@pytest.fixture(scope="module")
def archived(train_variants, tmp_path_factory) -> Archived:
    return archived_run(train_variants, tmp_path_factory)


def _grid(a: Archived):
    """The dataset's files and its grid windows, in the archive's idx order."""
    files = dataset_files("sample", CFG.variant, a.settings, CFG.role)
    codes = arch.load_codes(a.db, "sample")
    f = np.array([files.relpaths.index(s) for s in codes.source])
    return files, codes, np.stack([f, codes.row, codes.col], axis=1).astype(np.int64)


def test_every_patch_is_stored_once_where_the_embeddings_place_it(archived):
    files, codes, windows = _grid(archived)
    assert len(codes) == archived.run.archive.patches == 2 * 16 * 16
    assert len({tuple(w) for w in windows.tolist()}) == len(codes)  # each grid window once
    assert set(windows[:, 1].tolist()) == set(range(0, 512, 32))
    _, masks = read_patches(files.images, files.masks, windows, 32)
    places = [raster_place(p) for p in files.images]
    es = _assemble(np.zeros((len(codes), 1), np.float32), patch_labels(masks, len(codes)),
                   windows, places, files.relpaths, 32, 8)  # embed_dataset's placement
    for name in ("cells", "lon", "lat", "time", "source", "labels"):
        np.testing.assert_array_equal(getattr(codes, name), getattr(es, name), err_msg=name)
    assert (codes.labels >= 0).any() and archived.run.archive.h3_resolution == 8
    assert (codes.bits, codes.codes.shape, codes.codes.dtype) == (16, (512, 2), np.uint8)
    assert (codes.codec_id, codes.model_id) == (archived.run.training.codec_id,
                                                archived.run.training.model_id)


def test_bitstreams_codes_and_decoding_round_trip(archived):
    files, codes, windows = _grid(archived)
    lc, norm = archived.loaded, archived.loaded.meta["norm"]
    idx = [0, 5, 300, 511]
    raw, _ = read_patches(files.images, None, windows[idx], 32)
    streams = arch.read_bitstreams(archived.db, "sample", codes.codec_id, idx)
    assert streams == encode(lc.codec, normalised(raw, norm))  # what the codec writes
    expected = to_dn(decode(lc.codec, streams, SHAPE), norm)
    got = arch.decode_patches(archived.run.training.model_path, archived.db, "sample", idx)
    assert got.dtype == np.uint16 and got.shape == (4, *SHAPE)
    np.testing.assert_array_equal(got, expected)
    every = arch.read_bitstreams(archived.db, "sample", codes.codec_id, np.arange(len(codes)))
    np.testing.assert_array_equal(codes.codes,
                                  codes_from_bitstreams(lc.codec, lc.head, every, SHAPE))


def test_the_summary_row_is_the_build(archived):
    b = archived.run.archive
    cols, rows = results.query(archived.db, f"SELECT * FROM {arch.SUMMARY_TABLE}")
    assert len(rows) == 1
    row = dict(zip(cols, rows[0], strict=True))
    assert all(v is not None for v in row.values()), row
    streams = arch.read_bitstreams(archived.db, "sample", b.codec_id, np.arange(b.patches))
    nbytes = sum(len(s) for s in streams)
    assert row["bitstream_bytes"] == b.bitstream_bytes == nbytes
    assert row["bpp"] == b.bpp == 8 * nbytes / (512 * 32 * 32) == bits_per_pixel(streams,
                                                                                512 * 32 * 32)
    assert (row["patches"], row["patch_size"], row["bands"], row["dtype"], row["code_bits"]) == (
        512, 32, 4, "uint16", 16)
    assert row["raw_bytes"] == b.raw_bytes == 512 * 4 * 32 * 32 * 2
    assert 0 < row["lerc_zstd_bytes"] < row["raw_bytes"]
    assert 0 < row["zstd_bytes"] < row["raw_bytes"]
    assert (row["lossy_codec"], row["lossy_bpp"]) == (arch.LOSSY, b.lossy.bpp)
    assert b.lossy.bpp <= b.bpp and row["lossy_psnr_db"] == b.lossy.psnr_db
    assert row["run_id"] == b.run_id and row["seconds"] == b.seconds > 0
    assert len(b.curve) >= 3 and b.rd_png.startswith(b"\x89PNG\r\n\x1a\n")
    config = json.loads(row["config"])
    assert (config["stats_patches"], config["steps"], config["hash_bits"]) == (STATS, 4, 16)
    assert json.loads(row["host"])["cores"] >= 1
    assert row["content_hash"] == model_hash(archived.run.training.model_path)  # lineage
    # the distortion is that of the decoded bitstreams of the evenly spaced sample
    files, codes, windows = _grid(archived)
    take = arch._sample_positions(512, STATS)
    raw, _ = read_patches(files.images, None, windows[take], 32)
    out = arch.decode_patches(archived.run.training.model_path, archived.db, "sample", take)
    all_raw, _ = read_patches(files.images, None, windows, 32)
    assert b.peak == float(all_raw.max() - all_raw.min())
    assert row["psnr_db"] == pytest.approx(psnr(raw.numpy(), out, b.peak), rel=1e-12)


def test_a_rebuild_replaces_the_set_and_its_summary(archived, tmp_path):
    settings = copy_db(archived, tmp_path)
    with duckdb.connect(str(settings.results_db)) as con:
        before = con.execute(f"SELECT * EXCLUDE (written_at) FROM {arch.ARCHIVE_TABLE} "
                             "ORDER BY idx").fetchall()  # fmt: skip
    again = arch.build_archive(archived.run.training.model_path, settings, batch_size=100,
                               stats_patches=8)  # fmt: skip
    assert again.patches == 512 and again.run_id != archived.run.archive.run_id
    with duckdb.connect(str(settings.results_db)) as con:
        after = con.execute(f"SELECT * EXCLUDE (written_at) FROM {arch.ARCHIVE_TABLE} "
                            "ORDER BY idx").fetchall()  # fmt: skip
        summaries = con.execute(f"SELECT run_id FROM {arch.SUMMARY_TABLE}").fetchall()
    assert after == before  # other batches, the same rows, none twice
    assert summaries == [(again.run_id,)]


def test_the_newest_archive_is_read_and_another_codec_is_refused(archived, tmp_path):
    settings = copy_db(archived, tmp_path)
    other = train_codec(dataclasses.replace(CFG, steps=2, seed=1), settings)
    assert other.codec_id != archived.run.training.codec_id
    with pytest.raises(InputError) as err:  # the shared file holds the first codec's only
        arch.decode_patches(other.model_path, archived.db, "sample", [0])
    assert all(s in str(err.value) for s in ("sample", other.codec_id,
                                             archived.run.training.codec_id))
    arch.build_archive(other.model_path, settings, stats_patches=8)
    assert arch.load_codes(settings.results_db, "sample").codec_id == other.codec_id
    first = arch.load_codes(settings.results_db, "sample", archived.run.training.codec_id)
    np.testing.assert_array_equal(first.codes, arch.load_codes(archived.db, "sample").codes)
    np.testing.assert_array_equal(  # both archives held: each model decodes its own
        arch.decode_patches(archived.run.training.model_path, settings.results_db, "sample", [3]),
        arch.decode_patches(archived.run.training.model_path, archived.db, "sample", [3]))


def test_a_corrupt_bitstream_is_named_by_dataset_and_idx(archived, tmp_path):
    db = copy_db(archived, tmp_path).results_db
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET bitstream = 'garbage'::BLOB WHERE idx = 7")
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET bitstream = bitstream[:-1] || "
                    "'\\x00'::BLOB WHERE idx = 9")  # fmt: skip
    model = archived.run.training.model_path
    with pytest.raises(InputError, match=r"sample/\w+ patch idx 7: .*truncated"):
        arch.decode_patches(model, db, "sample", [2, 7])
    with pytest.raises(InputError, match=r"sample/\w+ patch idx 9: .*checksum"):
        arch.decode_patches(model, db, "sample", [9])
    assert arch.decode_patches(model, db, "sample", [2]).shape == (1, *SHAPE)


def test_check_codes_finds_stored_codes_that_are_not_their_streams(archived, tmp_path):
    model, cid = archived.run.training.model_path, archived.run.training.codec_id
    assert arch.check_codes(model, archived.db, "sample", cid, sample=512) == ()
    db = copy_db(archived, tmp_path).results_db
    stored = arch.load_codes(db, "sample").codes
    with duckdb.connect(str(db)) as con:  # every bit of two codes flipped
        for i in (0, 300):
            con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET code = ? WHERE idx = ?",
                        [(~stored[i]).tobytes(), i])  # fmt: skip
    assert arch.check_codes(model, db, "sample", cid, sample=512) == (0, 300)
    assert arch.check_codes(model, db, "sample", cid, sample=2) == (0,)  # idx 0 and 511
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET bitstream = 'x'::BLOB WHERE idx = 511")
    with pytest.raises(InputError, match="patch idx 511"):
        arch.check_codes(model, db, "sample", cid, sample=2)


def test_stored_codes_of_the_wrong_length_are_refused(archived, tmp_path):
    db = copy_db(archived, tmp_path).results_db
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE {arch.ARCHIVE_TABLE} SET code = code || '\\x00'::BLOB, code_bits = 24 "
                    "WHERE idx = 3")  # fmt: skip
    with pytest.raises(InputError, match="disagree on code_bits.*16 and 24"):
        arch.load_codes(db, "sample")


def test_missing_archives_and_patches_are_named(archived, tmp_path):
    with pytest.raises(arch.NoArchive, match="'sample'.*ocog compress"):
        arch.load_codes(tmp_path / "none.duckdb", "sample")
    with pytest.raises(arch.NoArchive, match="'other'.*ocog compress"):
        arch.load_codes(archived.db, "other")
    with pytest.raises(arch.NoArchive, match=f"sample/feed.*{archived.run.training.codec_id}"):
        arch.load_codes(archived.db, "sample", "feed")
    with pytest.raises(InputError, match="no patch idx 512, 9999"):
        arch.read_bitstreams(archived.db, "sample", archived.run.training.codec_id, [1, 512, 9999])
    empty = tmp_path / "empty.duckdb"
    with results.connect(empty):
        pass  # migrated, no rows
    with pytest.raises(arch.NoArchive, match="'sample'"):
        arch.load_codes(empty, "sample")


def test_the_rate_distortion_plot_has_every_codec_of_the_dataset(archived, tmp_path, monkeypatch):
    settings = copy_db(archived, tmp_path)
    other = dict(archived.run.archive.__dict__)
    with duckdb.connect(str(settings.results_db)) as con:  # a second codec at another lmbda
        con.execute(f"INSERT INTO {arch.SUMMARY_TABLE} (run_id, dataset, codec_id, model_id, "
                    "patches, bpp, psnr_db, config) VALUES ('r2', 'sample', 'other', 'm2', ?, "
                    "?, ?, '{\"lmbda\": 512}')", [other["patches"], 1.5, 31.0])  # fmt: skip
    seen = {}
    monkeypatch.setattr(arch, "rd_png", lambda points, curves, title: seen.update(
        points=points, curves=curves) or b"\x89PNG")  # fmt: skip
    assert arch.rate_distortion_png(archived.run.archive, settings.results_db) == b"\x89PNG"
    points = seen["points"]
    assert [p[1] for p in points] == sorted(p[1] for p in points)  # by rate
    this = archived.run.archive
    assert set(points) == {(f"lmbda {CFG.lmbda:g}, 16 b (this)", this.bpp, this.psnr_db),
                           ("lmbda 512", 1.5, 31.0)}
    assert seen["curves"][arch.LOSSY] == list(archived.run.archive.curve)
