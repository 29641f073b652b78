"""Real bitstreams: decoding gives back exactly what the codec's rounded latents decode to,
and a stream that is not this codec's, not this shape, or damaged is refused by name."""

import struct
import zlib

import numpy as np
import pytest
import torch

from ocog_lib.compress import bitstream
from ocog_lib.compress.bitstream import HEADER_BYTES, decode, decode_latents, encode
from ocog_lib.compress.codec import LATENT_LIMIT, Codec, CodecSpec, quantise
from ocog_lib.compress.metrics import bits_per_pixel
from ocog_lib.errors import InputError

SHAPE = (4, 32, 32)


@pytest.fixture(scope="module")
def codec():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return Codec(CodecSpec(4, 16, 8)).eval()


@pytest.fixture(scope="module")
def patches():
    return torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(1))


def test_round_trip_is_bit_exact(codec, patches):
    streams = encode(codec, patches)
    assert len(streams) == 6 and all(isinstance(s, bytes) for s in streams)
    with torch.no_grad():
        y = quantise(codec.analysis(patches))
        expected = codec.synthesis(y)
    assert torch.equal(decode_latents(codec, streams, SHAPE), y)
    assert torch.equal(decode(codec, streams, SHAPE), expected)
    # the rate is these bytes
    assert bits_per_pixel(streams, 6 * 32 * 32) == 8 * sum(map(len, streams)) / (6 * 1024)
    assert min(map(len, streams)) > HEADER_BYTES


def test_values_outside_the_tables_escape_exactly():
    torch.manual_seed(0)
    codec = Codec(CodecSpec(4, 16, 8)).eval()
    with torch.no_grad():  # latents far wider than the density's tables
        codec.analysis[-1].weight.mul_(100_000)
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = quantise(codec.analysis(x))
    t = codec.coding_tables()
    lo, hi = t.lo[None, :, None, None], (t.lo + t.lengths)[None, :, None, None]
    outside = (y.numpy() < lo) | (y.numpy() >= hi)
    assert outside.any() and (y.abs() == LATENT_LIMIT).any()  # escaped, some clamped
    assert torch.equal(decode_latents(codec, encode(codec, x), SHAPE), y)


def test_any_patch_size_of_multiples_of_8(codec):
    x = torch.randn(1, 4, 24, 40)
    streams = encode(codec, x)
    with torch.no_grad():
        expected = codec.synthesis(quantise(codec.analysis(x)))
    assert torch.equal(decode(codec, streams, (4, 24, 40)), expected)
    with pytest.raises(InputError, match="multiples of 8"):
        encode(codec, torch.randn(1, 4, 30, 32))
    assert decode(codec, [], SHAPE).shape == (0, *SHAPE)


def _with_crc(head_and_payload: bytes) -> bytes:
    """A stream whose header was edited, its checksum made right again."""
    head, payload = head_and_payload[:17], head_and_payload[HEADER_BYTES:]
    return head + struct.pack("<I", zlib.crc32(head + payload)) + payload


def test_damaged_and_foreign_streams_are_refused_by_name(codec, patches):
    good = encode(codec, patches[:2])
    s = good[1]
    flipped = bytearray(s)
    flipped[HEADER_BYTES + 2] ^= 0x10
    cases = [
        (s[:10], "truncated"),
        (s[:-4], "corrupt or truncated"),
        (bytes(flipped), "corrupt or truncated"),
        (b"XX" + s[2:], "not an ocog codec bitstream"),
        (s[:2] + bytes([2]) + s[3:], "format version 2"),
        (_with_crc(s[:3] + bytes(8) + s[11:]), "encoded by codec 0000000000000000"),
        (_with_crc(s[:11] + struct.pack("<3H", 8, 8, 8) + s[17:]), "latent shape"),
        ("not bytes", "not bytes"),
    ]
    for bad, match in cases:
        with pytest.raises(InputError, match=match) as err:
            decode(codec, [good[0], bad], SHAPE)
        assert err.value.what == "bitstream #1"
    with pytest.raises(InputError, match=r"latent shape \(8, 4, 4\), expected \(8, 2, 4\)"):
        decode(codec, good, (4, 16, 32))


def test_another_codec_cannot_read_it(codec, patches):
    torch.manual_seed(5)
    other = Codec(CodecSpec(4, 16, 8)).eval()
    with pytest.raises(InputError, match=f"not by this codec {other.codec_id()}"):
        decode(other, encode(codec, patches[:1]), SHAPE)


def test_changed_weights_get_new_tables_and_id(patches):
    torch.manual_seed(0)
    c = Codec(CodecSpec(4, 16, 8)).eval()
    before = c.coding_tables()
    assert c.coding_tables() is before  # kept while the weights are unchanged
    streams = encode(c, patches[:1])
    with torch.no_grad():
        c.density.biases[-1].add_(1.0)
    after = c.coding_tables()
    assert after.key != before.key and not np.array_equal(after.lo, before.lo)
    with pytest.raises(InputError, match="encoded by codec"):
        decode(c, streams, SHAPE)


def test_an_undecodable_payload_is_an_input_error(codec, patches, monkeypatch):
    def broken(*_):
        raise ValueError("boom")

    monkeypatch.setattr(bitstream.constriction.stream.queue, "RangeDecoder", broken)
    with pytest.raises(InputError, match="undecodable payload"):
        decode_latents(codec, encode(codec, patches[:1]), SHAPE)
