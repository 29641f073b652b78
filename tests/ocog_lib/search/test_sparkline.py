"""Sparklines short enough for the Dagster UI to show in place."""

import base64
import io
import math

import numpy as np
import pytest
from PIL import Image

from ocog_lib.errors import InputError
from ocog_lib.search.sparkline import INLINE_LIMIT, sparkline_markdown, sparkline_png


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


@pytest.mark.parametrize("n", [1, 7, 500])
def test_the_markdown_fits_the_inline_limit_and_holds_a_png(n):
    values = [math.sin(i / 5) * (1 + i % 3) for i in range(n)]
    text = sparkline_markdown(values, "caption")
    assert len(text) < INLINE_LIMIT and text.endswith("\n\ncaption")
    data = text.split("base64,", 1)[1].split(")", 1)[0]
    assert Image.open(io.BytesIO(base64.b64decode(data))).format == "PNG"


def test_a_rising_series_is_drawn_low_left_to_high_right():
    line = _pixels(sparkline_png([0.0, 1.0, 2.0, 3.0], width=60, height=20)) == 1
    rows, cols = np.nonzero(line)
    assert cols.min() == 0 and cols.max() == 59  # spans the width
    assert rows[cols == cols.min()].mean() > rows[cols == cols.max()].mean()  # image y is down


def test_gaps_are_skipped_and_nothing_to_draw_is_an_input_error():
    assert sparkline_png([1.0, float("nan"), None, 2.0])
    with pytest.raises(InputError, match="sparkline values"):
        sparkline_png([float("nan")])
