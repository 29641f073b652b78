"""What every `ocog` command shares: argparse value types, library defaults, help format.

A bad value is refused by argparse itself (`error: argument --x: ...`, exit 2) before any
work starts; the library checks the same values again (InputError) for its other callers.

Defaults come from the library's config dataclasses and function signatures, imported,
so a flag can never measure or train something else than the library's default does. The
modules they live in import neither torch nor rasterio at module level (3 s that
`ocog --help` must not pay; `tests/ocog_lib/cli/test_main.py` checks).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import inspect
import math
from collections.abc import Callable

# output dtypes the engine can allocate a batch tensor in (numpy names torch shares)
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "bfloat16",
          "float32", "float64")  # fmt: skip


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _bounded(convert: Callable[[str], float], lo: float | None = None,
             hi: float | None = None, *, above: bool = False, name: str = "value"):
    """A type that converts, then refuses values below `lo` (or at it, with `above`) or
    over `hi`, saying the rule."""
    if hi is not None:
        rule = f"in {lo:g}..{hi:g}"
    elif above:
        rule = f"more than {lo:g}"
    else:
        rule = "0 or more" if lo == 0 else f"at least {lo:g}"

    def check(text: str):
        value = convert(text)
        low = lo is not None and (value <= lo if above else value < lo)
        if low or (hi is not None and value > hi):
            shown = f"{value:g}" if isinstance(value, float) else str(value)
            raise argparse.ArgumentTypeError(f"{shown} must be {rule}")
        return value

    check.__name__ = name
    return check


positive_int = _bounded(_int, 1, name="positive_int")
non_negative_int = _bounded(_int, 0, name="non_negative_int")
positive_float = _bounded(_float, 0, above=True, name="positive_float")
non_negative_float = _bounded(_float, 0, name="non_negative_float")


def at_least(lo: int) -> Callable[[str], int]:
    return _bounded(_int, lo, name=f"int_from_{lo}")


def int_range(lo: int, hi: int) -> Callable[[str], int]:
    return _bounded(_int, lo, hi, name=f"int_{lo}_{hi}")


def float_range(lo: float, hi: float) -> Callable[[str], float]:
    return _bounded(_float, lo, hi, name=f"float_{lo:g}_{hi:g}")


def list_of(item: Callable[[str], object]) -> Callable[[str], tuple]:
    """A comma-separated list, each part checked by `item`; at least one part."""

    def parse(text: str) -> tuple:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or not all(parts):
            raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated values, none empty")
        try:
            return tuple(item(p) for p in parts)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    parse.__name__ = f"{getattr(item, '__name__', 'value')}_list"
    return parse


def name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("empty")
    return text.strip()


band_list = list_of(non_negative_int)  # 0-based band indices
name_list = list_of(name)


def dtype_name(text: str) -> str:
    if text.strip().lower() not in DTYPES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(DTYPES)}")
    return text.strip().lower()


# --- defaults ----------------------------------------------------------------------------


def defaults(obj: object) -> dict[str, object]:
    """Defaults of a dataclass's fields or a function's parameters."""
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj)
                if f.default is not dataclasses.MISSING}  # fmt: skip
    return {k: p.default for k, p in inspect.signature(obj).parameters.items()
            if p.default is not inspect.Parameter.empty}  # fmt: skip


@functools.cache
def defaults_of(module: str, qualname: str) -> dict[str, object]:
    """Defaults of `module.qualname`, a config dataclass or a function (see defaults)."""
    return defaults(getattr(importlib.import_module(module), qualname))


def default(module: str, qualname: str, key: str) -> object:
    """The library's default for `key` of `module.qualname` (see defaults_of)."""
    found = defaults_of(module, qualname)
    if key not in found:
        raise KeyError(f"{module}.{qualname} has no default for {key!r}")
    return found[key]


def constant(module: str, key: str) -> object:
    """A module-level constant of `module` (e.g. a tuple of names)."""
    return getattr(importlib.import_module(module), key)


def config_flags(p: argparse.ArgumentParser, config: type, helps: dict[str, str], *,
                 types: dict[str, Callable[[str], object]], choices: dict | None = None,
                 skip: tuple[str, ...] = ("dataset",)) -> None:
    """One flag per field of a config dataclass: its default and help from the library
    (booleans as --x/--no-x); a field's value type from `types`, else from its annotation
    (int, float: positive; anything else: a name)."""
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                           help=helps[f.name])
            continue
        kind = str(f.type).split("|")[0].strip()
        convert = types.get(f.name) or {"float": positive_float, "int": positive_int}.get(
            kind, name)  # fmt: skip
        p.add_argument(flag, type=convert, default=f.default,
                       choices=(choices or {}).get(f.name),
                       help=helps[f.name] + (" (default: no limit)" if f.name == "steps"
                                             else ""))  # fmt: skip


def stream_default(key: str) -> object:
    """StreamConfig's default for `key`: the engine flags measure the engine's defaults."""
    return default("ocog_lib.stream.config", "StreamConfig", key)


# --- help --------------------------------------------------------------------------------


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to a flag's help unless it says its default already, or has
    none worth showing (None, False, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        value = action.default
        said = "%(default)" in text or "(default" in text
        none = value is None or value is False or value == argparse.SUPPRESS or (
            isinstance(value, str | list | tuple) and not value)
        if said or none or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class OcogParser(argparse.ArgumentParser):
    """Every ocog (sub)parser: subparsers inherit the class, so all show their defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)


def count(text: str) -> int:
    """A whole count such as 100000, 1e5 or 2.5e6 (up to 1e10)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 1 or value != int(value) or value > 1e10:
        raise argparse.ArgumentTypeError(f"{text!r} must be a whole count in 1..1e10")
    return int(value)
