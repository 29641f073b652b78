"""`ocog bench compare --peers`: the flag's forms reach CompareConfig as peer names."""

from __future__ import annotations

import pytest

from ocog_lib.bench.peers import PEER_NAMES
from ocog_lib.cli.main import build_parser


@pytest.mark.parametrize("argv, peers", [
    ([], None), (["--peers"], PEER_NAMES), (["--peers", "all"], PEER_NAMES),
    (["--peers", "rasteret,async-geotiff"], ("rasteret", "async-geotiff")),
])  # fmt: skip
def test_the_peers_flag(argv, peers):
    args = build_parser().parse_args(["bench", "compare", *argv])
    assert args.peers == peers
