"""How good the codec and its hash codes are, on held-out patches it never saw.

The patches are the grid windows below each raster's split (`SpatialSplit`, as
training's), labelled by their mask's majority class (`embed.infer.patch_labels`).

Codec: each patch is encoded to a real bitstream and decoded from it; bpp is from those
bytes (headers and the range coder's tail included), PSNR and SSIM on the DN scale with
the held-out patches' data range (max - min) as the peak (`metrics`), MSE on the
normalised scale, and the rate-distortion cost bpp + lmbda x MSE that training lowers.

Hash codes: computed from the bitstreams by entropy decoding alone, as an archive would
be indexed. Retrieval quality is `embed.quality.retrieval_scores` (precision@k, mAP@k)
over Hamming distance: for codes b in {-1, +1}^K, b_i . b_j = K - 2 Hamming(i, j), so
ranking by that inner product is ranking by Hamming distance, ties by database order in
both (`hamming.hamming_search` returns the same neighbours). Random K-bit codes are
the baseline that knows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ocog_lib.compress.bitstream import HEADER_BYTES, decode, encode
from ocog_lib.compress.codec import Codec
from ocog_lib.compress.hamming import unpack_codes
from ocog_lib.compress.hashing import HashHead, codes_from_bitstreams
from ocog_lib.compress.metrics import bits_per_pixel, psnr, ssim, to_dn
from ocog_lib.compress.train import load_codec
from ocog_lib.embed.infer import patch_labels
from ocog_lib.embed.quality import retrieval_scores
from ocog_lib.embed.train import dataset_files, normalised, read_patches
from ocog_lib.errors import InputError
from ocog_lib.settings import Settings
from ocog_lib.stream.rasters import open_raster
from ocog_lib.stream.split import SpatialSplit

HASH, RANDOM = "hash", "random_codes"


@dataclass(frozen=True)
class CodecQuality:
    bpp: float  # 8 x bytes / pixels, from the bitstreams
    header_bpp: float  # the share of bpp that is headers
    psnr_db: float  # DN scale, peak = `peak`
    ssim: float  # DN scale, L = `peak`
    mse: float  # normalised scale
    rd_cost: float  # bpp + lmbda x mse
    lmbda: float
    peak: float
    n_patches: int


@dataclass(frozen=True)
class HashQuality:
    method: str  # "hash" or "random_codes"
    bits: int
    k: int
    precision_at_k: float
    map_at_k: float
    n_queries: int
    index_bytes: int  # per item: K / 8


@dataclass(frozen=True)
class HeldOutPatches:
    raw: torch.Tensor  # float32 (n, C, p, p) DN
    labels: np.ndarray  # int16 (n,), NO_LABEL without a mask
    windows: np.ndarray  # (n, 3)


def held_out_patches(meta: dict, settings: Settings) -> HeldOutPatches:
    """The held-out grid windows of the files the model was trained on, read once."""
    cfg = meta["config"]
    files = dataset_files(meta["dataset"], meta["variant"], settings, meta["role"])
    if files.fingerprint != meta["fingerprint"]:
        raise InputError(f"{meta['dataset']}/{meta['variant']}",
                         f"its files changed since codec {meta['model_id']} was trained "
                         "on them: retrain it before measuring it")  # fmt: skip
    patch = int(meta["patch_size"])
    grids = [open_raster(p).grid for p in files.images]
    windows = SpatialSplit(cfg["val_fraction"], patch).val_windows(grids, cfg["max_val_patches"])
    x, y = read_patches(files.images, files.masks or None, windows, patch)
    return HeldOutPatches(x, patch_labels(y, len(x)), windows)


def codec_quality(codec: Codec, raw: torch.Tensor, norm: dict, lmbda: float, *,
                  peak: float | None = None) -> CodecQuality:  # fmt: skip
    """Rate from real bitstreams and distortion of their decoding, of DN patches."""
    x = normalised(raw, norm)
    streams = encode(codec, x)
    decoded = decode(codec, streams, tuple(x.shape[1:]))
    pixels = len(x) * x.shape[2] * x.shape[3]
    bpp = bits_per_pixel(streams, pixels)
    ref, out = raw.numpy(), to_dn(decoded, norm)
    peak = float(ref.max() - ref.min()) if peak is None else peak
    mse = float(torch.mean((decoded - x) ** 2))
    return CodecQuality(bpp, 8.0 * HEADER_BYTES * len(x) / pixels, psnr(ref, out, peak),
                        ssim(ref, out, peak), mse, bpp + lmbda * mse, lmbda, peak,
                        len(x))  # fmt: skip


def hash_scores(packed: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float, int, int]:
    """(precision@k, mAP@k, queries, k) of exact Hamming search over packed codes."""
    signs = unpack_codes(packed).astype(np.float32) * 2 - 1
    return retrieval_scores(signs, labels, k)


def random_codes(n: int, bits: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, bits/8) packed codes of independent fair bits."""
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


def hash_quality(codec: Codec, head: HashHead, streams: list[bytes], shape: tuple[int, ...],
                 labels: np.ndarray, k: int, seed: int = 0) -> list[HashQuality]:  # fmt: skip
    """The head's codes (from the bitstreams) against random codes of as many bits."""
    bits = head.spec.bits
    codes = {HASH: codes_from_bitstreams(codec, head, streams, shape),
             RANDOM: random_codes(len(streams), bits, seed)}  # fmt: skip
    out = []
    for method, packed in codes.items():
        p, m, n, used = hash_scores(packed, labels, k)
        out.append(HashQuality(method, bits, used, p, m, n, bits // 8))
    return out


@dataclass(frozen=True)
class Measured:
    codec: CodecQuality
    hashing: tuple[HashQuality, ...]


def measure_compress(model_path: str | Path, settings: Settings | None = None, *,
                     k: int = 10, device: str = "cpu") -> Measured:  # fmt: skip
    """Codec quality and hash retrieval (head and random codes) on the held-out patches."""
    settings = settings or Settings.from_env()
    loaded = load_codec(model_path, device)
    data = held_out_patches(loaded.meta, settings)
    meta = loaded.meta
    q = codec_quality(loaded.codec, data.raw, meta["norm"], float(meta["config"]["lmbda"]))
    streams = encode(loaded.codec, normalised(data.raw, meta["norm"]))
    hashing = hash_quality(loaded.codec, loaded.head, streams, tuple(data.raw.shape[1:]),
                           data.labels, k, int(meta["config"]["seed"]))  # fmt: skip
    return Measured(q, tuple(hashing))


def bit_balance(packed: np.ndarray, labels: np.ndarray | None = None,
                prior: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """float64 (K,) share of ones per bit. With `labels` and `prior` (share of each class,
    indexed by label), each patch is weighed prior[label] / share of its label here: the
    balance the codes would have under that class mix (e.g. training's), which tells the
    code's bits apart from a held-out set's other mix of classes."""
    bits = unpack_codes(packed).astype(np.float64)
    if labels is None or prior is None:
        return bits.mean(0)
    labels = np.asarray(labels)
    keep = (labels >= 0) & (labels < len(prior))
    here = np.bincount(labels[keep], minlength=len(prior)) / max(int(keep.sum()), 1)
    w = np.asarray(prior, np.float64)[labels[keep]] / here[labels[keep]]
    if not w.sum() > 0:
        raise InputError("bit balance", "no patch has a label the prior gives weight to")
    return (bits[keep] * w[:, None]).sum(0) / w.sum()
