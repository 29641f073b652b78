"""VirtuGhan's peer module without VirtuGhan: the features it is fed and its failures.

The peer itself (a venv from PyPI, then VirtuGhan's code) runs only under
`ocog bench tiles --peers virtughan`, never in the test suite."""

from __future__ import annotations

import sys

import pytest

from ocog_lib.bench import virtughan_peer as vp
from ocog_lib.cube.expression import Expression
from ocog_lib.cube.stack import SceneStack
from ocog_lib.data.timestack import build_time_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return SceneStack.load(build_time_stack(tmp_path_factory.mktemp("vg") / "s", dates=2,
                                            size=64))  # fmt: skip


def test_features_are_stac_items_its_parsers_read(stack):
    expr = Expression.parse("(nir-red)/(nir+red)", stack.bands, stack.aliases)
    bands = vp.formula_bands(stack, expr)
    assert bands == ["nir", "red"]
    feats = vp.features(stack, bands)
    assert len(feats) == 2
    for f, scene in zip(feats, stack.scenes, strict=True):
        parts = f["id"].split("_")  # what virtughan.collections' Sentinel-2 parser reads
        assert parts[2] == scene.datetime.strftime("%Y%m%d") and len(parts[1]) >= 2
        assert f["properties"]["datetime"].startswith(scene.datetime.date().isoformat())
        assert f["assets"]["red"]["href"] == stack.uri(scene, "B04")
        assert f["assets"]["nir"]["href"] == stack.uri(scene, "B08")


def test_a_failing_step_says_which_and_why():
    with pytest.raises(vp.PeerUnavailable) as exc:
        vp._run([sys.executable, "-c", "import sys; sys.exit('no wheel for you')"],
                "pip install virtughan", 30)  # fmt: skip
    assert str(exc.value) == "pip install virtughan failed (exit 1): no wheel for you"
