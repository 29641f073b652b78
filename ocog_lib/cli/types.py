"""What every `ocog` command shares: argparse value types, library defaults, help format.

A bad value is refused by argparse itself (`error: argument --x: ...`, exit 2) before any
work starts; the library checks the same values again (InputError) for its other callers.

Defaults come from the library's config dataclasses and function signatures, so a flag
can never measure or train something else than the library's default does. They are read
from the source (ast) rather than imported: the config modules import torch, 3 s that
`ocog --help` must not pay. `tests/ocog_lib/test_cli.py` compares them with the imported
dataclasses.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

# output dtypes the engine can allocate a batch tensor in (numpy names torch shares)
DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64", "float16", "float32",
          "float64")  # fmt: skip


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


@functools.cache
def defaults_of(module: str, qualname: str) -> dict[str, object]:
    """Literal defaults of a dataclass's fields or a function's parameters in `module`.

    Read from the source so the module is not imported; a default written as a module
    constant (DEFAULT_CACHE_MB) is followed, one written as an expression is left out.
    """
    tree = _source(module)
    if tree is None:
        return _imported_defaults(module, qualname)  # no source: import it after all
    consts = _module_constants(tree)
    node = next(n for n in tree.body
                if isinstance(n, ast.ClassDef | ast.FunctionDef) and n.name == qualname)
    pairs: list[tuple[str, ast.expr]] = []
    if isinstance(node, ast.ClassDef):
        pairs = [(s.target.id, s.value) for s in node.body
                 if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value]
    else:
        a = node.args
        positional = (a.posonlyargs + a.args)[len(a.posonlyargs + a.args) - len(a.defaults):]
        pairs = [(p.arg, d) for p, d in zip(positional, a.defaults, strict=True)]
        pairs += [(p.arg, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
                  if d is not None]
    out: dict[str, object] = {}
    for key, expr in pairs:
        if isinstance(expr, ast.Name) and expr.id in consts:
            out[key] = consts[expr.id]
            continue
        try:
            out[key] = ast.literal_eval(expr)
        except ValueError:
            continue  # field(default_factory=...) and the like
    return out  # fmt: skip


@functools.cache
def _source(module: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


def _module_constants(tree: ast.Module) -> dict[str, object]:
    out: dict[str, object] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(
            stmt.targets[0], ast.Name
        ):
            try:
                out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
            except ValueError:
                pass
    return out


def _imported_defaults(module: str, qualname: str) -> dict[str, object]:
    import dataclasses
    import inspect

    obj = getattr(importlib.import_module(module), qualname)
    if dataclasses.is_dataclass(obj):
        return {f.name: f.default for f in dataclasses.fields(obj)
                if f.default is not dataclasses.MISSING}  # fmt: skip
    return {k: p.default for k, p in inspect.signature(obj).parameters.items()
            if p.default is not inspect.Parameter.empty}  # fmt: skip


def default(module: str, qualname: str, key: str) -> object:
    """The library's default for `key` of `module.qualname` (see defaults_of)."""
    found = defaults_of(module, qualname)
    if key not in found:
        raise KeyError(f"{module}.{qualname} has no literal default for {key!r}")
    return found[key]


@functools.cache
def constant(module: str, key: str) -> object:
    """A literal module-level constant of `module` (e.g. a tuple of names), not imported."""
    tree = _source(module)
    if tree is None:
        return getattr(importlib.import_module(module), key)
    return _module_constants(tree)[key]


STREAM_CONFIG = ("ocog_lib.stream.dataset", "StreamConfig")


def stream_default(key: str) -> object:
    return default(*STREAM_CONFIG, key)


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
