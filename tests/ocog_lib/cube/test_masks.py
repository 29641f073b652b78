"""SCL classes and Landsat 8 BQA bits on constructed values."""

from __future__ import annotations

import numpy as np
import pytest

from ocog_lib.cube.masks import bqa_keep, keep, scl_keep
from ocog_lib.errors import InputError


def test_scl_default_classes():
    classes = np.arange(12, dtype=np.uint8)
    kept = scl_keep(classes)
    assert [int(c) for c in classes[kept]] == [2, 4, 5, 6, 7, 11]
    assert scl_keep(np.array([np.nan, 4.0])).tolist() == [False, True]  # no value: no data
    assert scl_keep(classes, masked=frozenset({4})).sum() == 11


def _c1(fill=0, cloud=0, cloud_conf=0, shadow=0, snow=0, cirrus=0, terrain=0, sat=0) -> int:
    return (fill | terrain << 1 | sat << 2 | cloud << 4 | cloud_conf << 5 | shadow << 7
            | snow << 9 | cirrus << 11)  # fmt: skip


def _pre(fill=0, water=0, veg=0, snow=0, cirrus=1, cloud=1) -> int:
    return fill | water << 4 | veg << 8 | snow << 10 | cirrus << 12 | cloud << 14


@pytest.mark.parametrize(
    "value, kept",
    [
        (_c1(cloud_conf=1, shadow=1, snow=1, cirrus=1), True),  # 2720: clear, low confidences
        (_c1(cloud_conf=2, shadow=2, cirrus=2, snow=3, terrain=1, sat=3), True),
        (_c1(fill=1), False),
        (_c1(cloud=1, cloud_conf=1), False),
        (_c1(cloud_conf=3), False),
        (_c1(shadow=3), False),
        (_c1(cirrus=3), False),
        (_pre(), True),  # 20480: clear land, pre-collection
        (_pre(cloud=2, cirrus=2, snow=3, water=3), True),
        (_pre(cloud=3), False),
        (_pre(cirrus=3), False),
        (1, False),  # fill reads the same in both layouts
    ],
)
def test_bqa_rules(value, kept):
    assert bqa_keep(np.array([value], np.uint16))[0] == kept
    assert keep("bqa", np.array([[value]], np.uint16))[0, 0] == kept


def test_bqa_layouts_forced_and_named():
    assert _c1(cloud_conf=1, shadow=1, snow=1, cirrus=1) == 2720 and _pre() == 20480
    v = np.array([_pre(cloud=3)], np.uint16)
    assert not bqa_keep(v, "pre")[0] and bqa_keep(v, "c1")[0]  # C1 reads no cloud bit there
    with pytest.raises(InputError, match="layout=x"):
        bqa_keep(v, "x")
    with pytest.raises(InputError, match="mask kind=fmask"):
        keep("fmask", v)
