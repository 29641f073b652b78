"""Real bitstreams: each patch's quantised latents range-coded (`constriction`) into bytes.

Format (version 1), little-endian:

    offset  size  field
    0       2     magic b"OC"
    2       1     format version
    3       8     codec id (`Codec.codec_id`, the hash of the weights that decode it)
    11      6     latent shape M, h, w (uint16 each)
    17      4     CRC-32 of bytes 0..16 and of the payload
    21      ...   payload: constriction's range-coder words (uint32)

The payload holds, channel after channel, the channel's h x w symbols under its table
(`entropy.CodingTables`; a value outside the table is the escape symbol), then that
channel's escaped values raw, 16 bits each (uniform). Decoding checks the header before
a symbol is read: a stream from another format version, another codec or of another
latent shape is refused, and so is one whose checksum fails (truncated or corrupt): an
`InputError` naming the stream, never garbage pixels. Rates are these bytes, header
and range-coder tail included (`metrics.bits_per_pixel`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import constriction
import numpy as np
import torch

from ocog_lib.compress.codec import LATENT_LIMIT, Codec
from ocog_lib.compress.entropy import CodingTables
from ocog_lib.errors import InputError

MAGIC = b"OC"
VERSION = 1
_HEAD = struct.Struct("<2sB8s3H")
_CRC = struct.Struct("<I")
HEADER_BYTES = _HEAD.size + _CRC.size  # 21
_RAW = 2 * LATENT_LIMIT + 1  # escaped values: v + LATENT_LIMIT in 0..2 x LATENT_LIMIT


def _models(tables: CodingTables) -> list:
    cat = constriction.stream.model.Categorical
    return [cat(tables.probabilities(c), perfect=False) for c in range(len(tables.lengths))]


def _encode_one(y: np.ndarray, tables: CodingTables, models: list, raw) -> bytes:
    """One patch's (M, h, w) int32 latents -> header + payload."""
    enc = constriction.stream.queue.RangeEncoder()
    for c in range(y.shape[0]):
        v = y[c].ravel()
        s = v - tables.lo[c]
        escaped = (s < 0) | (s >= tables.lengths[c])
        enc.encode(np.where(escaped, tables.lengths[c], s).astype(np.int32), models[c])
        if escaped.any():
            enc.encode((v[escaped] + LATENT_LIMIT).astype(np.int32), raw)
    payload = enc.get_compressed().astype("<u4").tobytes()
    head = _HEAD.pack(MAGIC, VERSION, bytes.fromhex(tables.key), *y.shape)
    return head + _CRC.pack(zlib.crc32(head + payload)) + payload


def encode(model: Codec, patches: torch.Tensor, *, batch_size: int = 64) -> list[bytes]:
    """One bitstream per normalised (n, C, H, W) patch, H and W multiples of 8."""
    tables = model.coding_tables()
    models, raw = _models(tables), constriction.stream.model.Uniform(_RAW)
    device = next(model.parameters()).device
    out = []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(patches), batch_size):
            y = model.encode_latents(patches[i : i + batch_size].to(device).float())
            out += [_encode_one(v, tables, models, raw) for v in y.cpu().numpy().astype(np.int32)]
    return out


def _payload(stream: bytes, key: str, expected: tuple[int, int, int], what: str) -> np.ndarray:
    """The checked payload words of one stream; InputError(`what`, why) when it is not ours."""
    if not isinstance(stream, bytes | bytearray | memoryview):
        raise InputError(what, f"not bytes but {type(stream).__name__}")
    stream = bytes(stream)
    if len(stream) < HEADER_BYTES:
        raise InputError(what, f"truncated: {len(stream)} bytes, the header alone is "
                         f"{HEADER_BYTES}")  # fmt: skip
    magic, version, codec, *shape = _HEAD.unpack_from(stream)
    if magic != MAGIC:
        raise InputError(what, f"not an ocog codec bitstream (magic {magic!r})")
    if version != VERSION:
        raise InputError(what, f"format version {version}; this ocog reads version {VERSION}")
    (crc,) = _CRC.unpack_from(stream, _HEAD.size)
    payload = stream[HEADER_BYTES:]
    if crc != zlib.crc32(stream[: _HEAD.size] + payload) or len(payload) % 4:
        raise InputError(what, "corrupt or truncated: its checksum does not match")
    if codec.hex() != key:
        raise InputError(what, f"encoded by codec {codec.hex()}, not by this codec {key}")
    if tuple(shape) != expected:
        raise InputError(what, f"latent shape {tuple(shape)}, expected {expected}")
    return np.frombuffer(payload, dtype="<u4").astype(np.uint32)


def _decode_one(words: np.ndarray, shape: tuple[int, int, int], tables: CodingTables,
                models: list, raw, what: str) -> np.ndarray:  # fmt: skip
    m, h, w = shape
    out = np.empty((m, h * w), dtype=np.int32)
    try:
        dec = constriction.stream.queue.RangeDecoder(words)
        for c in range(m):
            s = dec.decode(models[c], h * w)
            escaped = s == tables.lengths[c]
            out[c] = s + tables.lo[c]
            if escaped.any():
                out[c, escaped] = dec.decode(raw, int(escaped.sum())) - LATENT_LIMIT
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise InputError(what, f"undecodable payload ({exc})") from exc
    return out.reshape(m, h, w)


def decode_latents(model: Codec, bitstreams: Sequence[bytes], shape: tuple[int, ...]
                   ) -> torch.Tensor:  # fmt: skip
    """float32 (n, M, h, w) quantised latents of streams of (C, H, W) patches: entropy
    decoding only, no synthesis (what hashing and search need)."""
    expected = model.latent_shape(tuple(shape))
    tables = model.coding_tables()
    models, raw = _models(tables), constriction.stream.model.Uniform(_RAW)
    out = np.empty((len(bitstreams), *expected), dtype=np.float32)
    for i, stream in enumerate(bitstreams):
        what = f"bitstream #{i}"
        words = _payload(stream, tables.key, expected, what)
        out[i] = _decode_one(words, expected, tables, models, raw, what)
    return torch.from_numpy(out)


def decode(model: Codec, bitstreams: Sequence[bytes], shape: tuple[int, ...], *,
           batch_size: int = 64) -> torch.Tensor:  # fmt: skip
    """float32 (n, C, H, W) normalised patches: latents decoded, then synthesised."""
    y = decode_latents(model, bitstreams, shape)
    device = next(model.parameters()).device
    model.eval()
    parts = []
    with torch.no_grad():
        for i in range(0, len(y), batch_size):
            parts.append(model.synthesis(y[i : i + batch_size].to(device)).float().cpu())
    if not parts:
        return torch.empty((0, *(int(v) for v in shape[-3:])), dtype=torch.float32)
    return torch.cat(parts)
