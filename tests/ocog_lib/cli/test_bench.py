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


def test_stream_normalisation_flags_make_the_engines_normalization():
    from ocog_lib.cli.bench import _normalization
    from ocog_lib.errors import InputError
    from ocog_lib.stream.normalize import Normalization

    args = build_parser().parse_args(["bench", "stream", "--dtype", "bfloat16", "--mean",
                                      "10,20", "--std", "2,4"])  # fmt: skip
    assert args.dtype == "bfloat16"
    assert _normalization(args) == Normalization.from_mean_std((10, 20), (2, 4))
    assert _normalization(build_parser().parse_args(["bench", "stream"])) is None
    with pytest.raises(InputError, match="--mean/--std"):
        _normalization(build_parser().parse_args(["bench", "stream", "--mean", "1"]))
