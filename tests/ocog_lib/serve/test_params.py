"""Query values: parsed or refused naming the parameter, with 400 or 422."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ocog_lib.errors import InputError
from ocog_lib.serve.config import DEFAULT_EXPRESSION, ServeConfig
from ocog_lib.serve.errors import ApiError
from ocog_lib.serve.params import (
    TileQuery,
    check_choice,
    parse_date,
    parse_number,
    parse_rescale,
    png_rescale,
)


def test_dates_are_utc_whatever_their_spelling():
    want = datetime(2024, 1, 31, 10, 30, tzinfo=UTC)
    assert parse_date("start", "2024-01-31T10:30:00Z") == want
    assert parse_date("start", "2024-01-31T11:30:00+01:00") == want
    assert parse_date("start", "2024-01-31") == datetime(2024, 1, 31, tzinfo=UTC)
    assert parse_date("end", "2024-01-31", end_of_day=True) == datetime(
        2024, 1, 31, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_date("start", None) is None and parse_date("start", "") is None


@pytest.mark.parametrize("call, status, named", [
    (lambda: parse_date("end", "31/01/2024"), 400, "end=31/01/2024"),
    (lambda: parse_number("p", "x", 0, 100), 400, "p=x"),
    (lambda: parse_number("p", "nan", 0, 100), 422, "p=nan"),
    (lambda: parse_number("p", "101", 0, 100), 422, "p=101"),
    (lambda: parse_rescale("0;1"), 400, "rescale=0;1"),
    (lambda: parse_rescale("1,1"), 422, "rescale=1,1"),
    (lambda: parse_rescale("0,inf"), 422, "rescale=0,inf"),
    (lambda: check_choice("colormap", "jet", ("viridis",)), 422, "colormap=jet"),
    (lambda: png_rescale(TileQuery(expression="nir")), 422, "expression=nir"),
])  # fmt: skip
def test_refusals_name_the_parameter(call, status, named):
    with pytest.raises(ApiError) as exc:
        call()
    assert exc.value.status == status and exc.value.what == named and exc.value.cause


def test_the_default_ndvi_has_a_fixed_stretch_and_a_given_one_wins():
    assert png_rescale(TileQuery(expression=DEFAULT_EXPRESSION)) == (-1.0, 1.0)
    assert png_rescale(TileQuery(expression="( nir-red ) / (nir+red)")) == (-1.0, 1.0)
    assert png_rescale(TileQuery(expression="nir", rescale=(0.0, 5.0))) == (0.0, 5.0)
    assert parse_rescale("-1,1") == (-1.0, 1.0)


def test_the_key_names_stretch_and_colours_only_for_png():
    q = TileQuery(expression="nir", rescale=(0.0, 1.0), colormap="greys")
    assert "colormap" in q.key_args("png") and "rescale" in q.key_args("png")
    assert "colormap" not in q.key_args("npy") and "rescale" not in q.key_args("tif")


@pytest.mark.parametrize("field, value", [("port", 70000), ("max_concurrent", 0),
                                          ("tile_size", 8), ("tile_cache_mb", -1)])
def test_config_refuses_impossible_values(field, value):
    with pytest.raises(InputError, match=field):
        ServeConfig(**{field: value})
