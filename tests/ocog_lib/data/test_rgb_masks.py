"""RGB-coded labels to class ids: the ISPRS palette, boundaries, unknown colours."""

import numpy as np
import pytest

from ocog_lib.data.rgb_masks import (
    IGNORE_INDEX,
    ISPRS_CLASSES,
    RgbMaskDecoder,
    encode,
    isprs_decoder,
)
from ocog_lib.errors import InputError


def test_isprs_palette_round_trips():
    ids = np.random.default_rng(0).integers(0, 6, (40, 50), dtype=np.uint8)
    decoded, stats = isprs_decoder().decode(encode(ids))
    np.testing.assert_array_equal(decoded, ids)
    assert (stats.pixels, stats.unknown) == (2000, 0)
    # the palette itself, as the benchmark defines it
    assert {name: colour for name, colour in ISPRS_CLASSES.values()} == {
        "impervious_surfaces": (255, 255, 255), "building": (0, 0, 255),
        "low_vegetation": (0, 255, 255), "tree": (0, 255, 0), "car": (255, 255, 0),
        "clutter": (255, 0, 0)}


def test_boundaries_and_unknown_colours_are_ignored_and_counted():
    rgb = encode(np.full((4, 5), 3, dtype=np.uint8))
    rgb[:, 0, 0] = 0  # eroded boundary
    rgb[:, 1, 1] = (254, 255, 255)  # almost white: not a class
    rgb[:, 2, 2] = (254, 255, 255)
    rgb[:, 3, 3] = (1, 2, 3)
    ids, stats = isprs_decoder().decode(np.concatenate([rgb, np.full((1, 4, 5), 255, np.uint8)]))
    assert ids[0, 0] == ids[1, 1] == ids[3, 3] == IGNORE_INDEX and ids[0, 1] == 3
    assert stats.unknown == 3 and stats.unknown_fraction == pytest.approx(3 / 20)
    assert stats.examples() == "(254, 255, 255) x2, (1, 2, 3) x1"


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="3 \\(or 4\\) uint8 bands"):
        isprs_decoder().decode(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(InputError, match="is also a class id"):
        RgbMaskDecoder({(1, 2, 3): 255})
