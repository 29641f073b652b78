"""stack.json: loading, checking, selecting scenes by date and cloud cover."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from ocog_lib.cube.stack import SceneStack
from ocog_lib.errors import InputError


def _doc(**over) -> dict:
    doc = {
        "name": "t", "bands": ["B04", "B08"], "aliases": {"red": "B04", "nir": "B08"},
        "mask": {"kind": "scl", "asset": "SCL"},
        "scenes": [
            {"id": "b", "datetime": "2024-03-15T10:30:00Z", "cloud_cover": 40.0,
             "assets": {"B04": "b/B04.tif", "B08": "s3://bucket/b/B08.tif", "SCL": "b/S.tif"}},
            {"id": "a", "datetime": "2024-01-15T10:30:00Z", "cloud_cover": 5,
             "assets": {"B04": "/abs/a4.tif", "B08": "a/B08.tif", "SCL": "a/S.tif"}},
        ],
    }  # fmt: skip
    doc.update(over)
    return doc


def _load(tmp_path, doc) -> SceneStack:
    (tmp_path / "stack.json").write_text(json.dumps(doc))
    return SceneStack.load(tmp_path)


def test_load_sorts_scenes_and_resolves_assets(tmp_path):
    stack = _load(tmp_path, _doc())
    assert [s.id for s in stack.scenes] == ["a", "b"]
    assert stack.scenes[0].datetime == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert stack.bands == ("B04", "B08") and stack.mask_kind == "scl"
    assert stack.uri(stack.scenes[1], "B04") == str((tmp_path / "b/B04.tif").resolve())
    assert stack.uri(stack.scenes[1], "nir") == "s3://bucket/b/B08.tif"  # an alias, a URI
    assert stack.uri(stack.scenes[0], "B04") == "/abs/a4.tif"
    assert stack.uri(stack.scenes[0], "SCL") == str((tmp_path / "a/S.tif").resolve())
    assert SceneStack.load(tmp_path / "stack.json") == stack


def test_select_by_dates_and_cloud_cover_gives_reasons(tmp_path):
    stack = _load(tmp_path, _doc())
    sel = stack.select(start="2024-01-15", end=date(2024, 3, 15))  # whole days, inclusive
    assert [s.id for s in sel.stack.scenes] == ["a", "b"]
    sel = stack.select(end="2024-03-14")
    assert [s.id for s in sel.stack.scenes] == ["a"]
    assert sel.reasons[1][:2] == ("b", False) and sel.reasons[1][2].startswith("after end")
    sel = stack.select(max_cloud=20)
    assert [s.id for s in sel.stack.scenes] == ["a"]
    assert sel.reasons[1][2] == "over max_cloud (40% > 20%)"
    sel = stack.select(start=datetime(2024, 2, 1, tzinfo=UTC), max_cloud=20)
    assert sel.stack.scenes == () and sel.summary() == "1 before start, 1 over max_cloud"
    assert sel.stack.name == "t" and sel.stack.root == stack.root


@pytest.mark.parametrize(
    "kwargs, what",
    [
        ({"start": "2024-13-01"}, "start=2024-13-01"),
        ({"start": "2024-03-01", "end": "2024-02-01"}, "start=2024-03-01T00:00:00Z"),
        ({"max_cloud": 120}, "max_cloud=120"),
    ],
)
def test_bad_selection_names_the_input(tmp_path, kwargs, what):
    stack = _load(tmp_path, _doc())
    with pytest.raises(InputError) as err:
        stack.select(**kwargs)
    assert err.value.what.startswith(what)


@pytest.mark.parametrize(
    "change, what, cause",
    [
        ({"bands": []}, "bands", "no bands"),
        ({"bands": ["B04", "B 8"]}, "'B 8'", "band name"),
        ({"aliases": {"red": "B05"}}, "alias 'red'", "not a band"),
        ({"mask": {"kind": "fmask", "asset": "F"}}, "mask", "null or"),
        ({"scenes": []}, "stack.json", "no scenes"),
    ],
)
def test_bad_stack_names_the_field(tmp_path, change, what, cause):
    with pytest.raises(InputError) as err:
        _load(tmp_path, _doc(**change))
    assert what in err.value.what and cause in err.value.cause


def test_bad_scene_names_the_scene(tmp_path):
    doc = _doc()
    del doc["scenes"][0]["assets"]["B08"]
    with pytest.raises(InputError, match="scene b") as err:
        _load(tmp_path, doc)
    assert "no asset for 'B08'" in err.value.cause
    doc = _doc()
    doc["scenes"][1]["datetime"] = "yesterday"
    with pytest.raises(InputError, match="scene a datetime=yesterday"):
        _load(tmp_path, doc)
    doc = _doc()
    doc["scenes"][1]["id"] = "b"
    with pytest.raises(InputError, match="appears twice"):
        _load(tmp_path, doc)
    with pytest.raises(InputError, match="no stack.json"):
        SceneStack.load(tmp_path / "nowhere")


def test_unknown_band_or_asset(tmp_path):
    stack = _load(tmp_path, _doc())
    with pytest.raises(InputError, match="not a band of stack 't'"):
        stack.uri(stack.scenes[0], "B11")
