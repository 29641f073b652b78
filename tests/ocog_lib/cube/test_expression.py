"""Band math: numpy's results on the same arrays, NaN kept, everything else refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from ocog_lib.cube.expression import MAX_CHARS, Expression
from ocog_lib.errors import InputError
from tests.support.rasters import real_pixels

BANDS = ("B02", "B03", "B04", "B08")
ALIASES = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08"}


def _parse(text: str) -> Expression:
    return Expression.parse(text, BANDS, ALIASES)


@pytest.fixture(scope="module")
def arrays() -> dict[str, np.ndarray]:
    px = real_pixels(4, 64, 64, "uint16", seed=3).astype(np.float32)
    px[:, :4, :4] = np.nan  # nodata
    return dict(zip(BANDS, px, strict=True))


def test_ndvi_equals_numpy(arrays):
    expr = _parse("(nir - red) / (nir + red)")
    assert expr.bands == ("B08", "B04")
    red, nir = arrays["B04"], arrays["B08"]
    np.testing.assert_array_equal(expr.evaluate(arrays), (nir - red) / (nir + red))
    np.testing.assert_array_equal(expr.evaluate(arrays), _parse("(B08-B04)/(B08+B04)")
                                  .evaluate(arrays))  # fmt: skip


def test_functions_and_logic_equal_numpy(arrays):
    text = "where((nir > red) & ~(blue >= 3000), sqrt(abs(nir - red)), -log(green) ** 2)"
    b, g, r, n = (arrays[k].astype(np.float64) for k in BANDS)
    with np.errstate(all="ignore"):
        ref = np.where((n > r) & ~(b >= 3000), np.sqrt(np.abs(n - r)), -np.log(g) ** 2)
    np.testing.assert_array_equal(_parse(text).evaluate(arrays), ref.astype(np.float32))
    clip = _parse("clip(maximum(red, blue), 500, minimum(nir, 4000)) | 0").evaluate(arrays)
    assert set(np.unique(clip[4:, 4:])) == {1.0}
    assert _parse("1 < red <= 2e4").evaluate(arrays)[10, 10] == 1.0


def test_nan_in_nan_out_and_no_silent_inf(arrays):
    out = _parse("where(red > 0, 1, blue)").evaluate(arrays)
    assert np.isnan(out[:4, :4]).all() and (out[4:, 4:] == 1).all()
    zero = {k: np.array([[0.0, 1.0]], np.float32) for k in BANDS}
    np.testing.assert_array_equal(_parse("red / (nir - 1)").evaluate(zero), [[0.0, np.nan]])
    np.testing.assert_array_equal(_parse("log(red)").evaluate(zero), [[np.nan, 0.0]])
    assert np.isnan(_parse("exp(nir * 1000)").evaluate(zero)[0, 1])  # overflow is not inf


@pytest.mark.parametrize(
    "text, what, cause",
    [
        ("(nir - swir) / 2", "swir", "unknown band"),
        ("nir.T", ".T", "attribute access"),
        ("red.__class__.__mro__", ".__mro__", "attribute access"),
        ("np.sqrt(red)", ".sqrt", "attribute access"),
        ("tan(red)", "tan()", "unknown function"),
        ("__import__('os')", "__import__()", "unknown function"),
        ("red // 2", "//", "operator not allowed"),
        ("red and nir", "and", "use & | ~"),
        ("red[0]", "Subscript", "not allowed"),
        ("'red'", "'red'", "only finite numbers"),
        ("(lambda: 1)()", "lambda: 1", "only the named functions"),
        ("where(red, nir)", "where()", "takes 3 arguments"),
        ("sqrt(x=red)", "sqrt()", "positional"),
        ("sqrt", "sqrt", "a function, not a band"),
        ("2 + 3", "expression=2 + 3", "reads no band"),
        ("(red", "expression=(red", "not a valid expression"),
        ("", "expression=''", "empty"),
    ],
)
def test_refusals_name_the_offender(text, what, cause):
    with pytest.raises(InputError) as err:
        _parse(text)
    assert err.value.what == what and cause in err.value.cause


def test_limits():
    long = "red + " * (MAX_CHARS // 6) + "red"
    with pytest.raises(InputError, match="characters, more than the 512 allowed"):
        _parse(long)
    many = [f"b{i}" for i in range(17)]
    with pytest.raises(InputError, match="reads 17 bands, more than the 16 allowed"):
        Expression.parse("+".join(many), many, {})
    assert len(Expression.parse("+".join(many[:16]), many, {}).bands) == 16
    with pytest.raises(InputError, match="no array given"):
        _parse("red + nir").evaluate({"B04": np.zeros((2, 2), np.float32)})
