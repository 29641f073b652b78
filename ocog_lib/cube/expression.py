"""Band math from untrusted text, safely: an AST whitelist, evaluated by walking the tree.

Allowed: numbers, band names and aliases, + - * / ** and unary - +, comparisons
(< <= > >= == !=, chains too), & | ~ (logical: nonzero is true), and the functions
where(c, a, b), abs, sqrt, log, exp, clip(x, lo, hi), minimum(a, b), maximum(a, b).
Anything else (attributes, subscripts, other names, keywords, lambdas, strings) is refused
with an ExpressionError (an InputError) naming it. Nothing is ever passed to eval or compiled.

Arithmetic runs in float64 and the result is float32, so a result equals numpy's (or
numexpr's) float64 arithmetic on the same pixels rounded once. NaN in -> NaN out: a pixel
is NaN in the result wherever any band the expression reads is NaN there (nodata stays
nodata, whichever branch of a `where` it sits in). Division by zero, log of 0 and every
other non-finite result is NaN, never inf or 0.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ocog_lib.cube.errors import ExpressionError

MAX_CHARS = 512
MAX_BANDS = 16
FUNCTIONS: dict[str, int] = {"where": 3, "abs": 1, "sqrt": 1, "log": 1, "exp": 1, "clip": 3,
                             "minimum": 2, "maximum": 2}  # fmt: skip

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**",
           ast.BitAnd: "&", ast.BitOr: "|"}  # fmt: skip
_UNARY = {ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}
_COMPARE = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==",
            ast.NotEq: "!="}  # fmt: skip
# refused operators, named as written
_SYMBOLS = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.BitXor: "^",
            ast.LShift: "<<", ast.RShift: ">>", ast.Not: "not", ast.And: "and", ast.Or: "or",
            ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}  # fmt: skip


@dataclass(frozen=True)
class Expression:
    text: str
    bands: tuple[str, ...]  # the real band names it reads, in order of first use
    names: dict[str, str]  # each name written (band or alias) -> its real band
    tree: ast.Expression = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str, bands: Sequence[str],
              aliases: Mapping[str, str] | None = None) -> Expression:  # fmt: skip
        """Check `text` against the whitelist and the stack's bands and aliases."""
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError(f"expression={text!r}", "empty: write band math such as "
                                  "(nir - red) / (nir + red)")  # fmt: skip
        if len(text) > MAX_CHARS:
            raise ExpressionError(f"expression={text[:40]}...", f"{len(text)} characters, more "
                                  f"than the {MAX_CHARS} allowed")  # fmt: skip
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError) as exc:
            msg = getattr(exc, "msg", None) or type(exc).__name__
            raise ExpressionError(f"expression={text}", f"not a valid expression ({msg})") from None
        names: dict[str, str] = {}
        _check(tree.body, _Scope(tuple(bands), dict(aliases or {}), names, text))
        real = tuple(dict.fromkeys(names.values()))
        if not real:
            raise ExpressionError(f"expression={text}", "reads no band: name at least one of "
                                  f"{', '.join(bands)}")  # fmt: skip
        if len(real) > MAX_BANDS:
            raise ExpressionError(f"expression={text[:60]}", f"reads {len(real)} bands, more than "
                                  f"the {MAX_BANDS} allowed")  # fmt: skip
        return cls(text, real, names, tree)

    def evaluate(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """The expression over same-shaped arrays keyed by real band name, as float32."""
        missing = [b for b in self.bands if b not in arrays]
        if missing:
            raise ExpressionError(missing[0], f"no array given for this band of {self.text!r}")
        values = {b: np.asarray(arrays[b], dtype=np.float64) for b in self.bands}
        shapes = {v.shape for v in values.values()}
        if len(shapes) != 1:
            raise ExpressionError(self.text, f"bands of different shapes {sorted(shapes)}")
        shape = shapes.pop()
        with np.errstate(all="ignore"):
            out = np.broadcast_to(_eval(self.tree.body, values, self.names), shape)
            out = np.where(np.isfinite(out), out, np.nan)
        for v in values.values():
            out[np.isnan(v)] = np.nan
        return out.astype(np.float32)


@dataclass(frozen=True)
class _Scope:
    bands: tuple[str, ...]
    aliases: dict[str, str]
    names: dict[str, str]  # filled while checking
    text: str


def _check(node: ast.AST, scope: _Scope) -> None:
    """Refuse anything outside the whitelist, naming it; record the names read."""
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ExpressionError(repr(v), f"only finite numbers are allowed in {scope.text!r}")
    elif isinstance(node, ast.Name):
        _check_name(node.id, scope)
    elif isinstance(node, ast.BinOp):
        _check_op(node.op, _BINARY, scope)
        _check(node.left, scope)
        _check(node.right, scope)
    elif isinstance(node, ast.UnaryOp):
        _check_op(node.op, _UNARY, scope)
        _check(node.operand, scope)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            _check_op(op, _COMPARE, scope)
        for sub in (node.left, *node.comparators):
            _check(sub, scope)
    elif isinstance(node, ast.Call):
        _check_call(node, scope)
    elif isinstance(node, ast.Attribute):
        raise ExpressionError(f".{node.attr}", f"attribute access is not allowed in {scope.text!r}")
    elif isinstance(node, ast.BoolOp):
        _check_op(node.op, {}, scope)
    else:
        raise ExpressionError(type(node).__name__, "not allowed in an expression "
                              f"({scope.text!r}): numbers, bands, + - * / ** & | ~, "
                              f"comparisons and {', '.join(FUNCTIONS)} only")  # fmt: skip


def _check_name(name: str, scope: _Scope) -> None:
    if name in FUNCTIONS:
        raise ExpressionError(name, f"a function, not a band: call it, e.g. {name}(...)")
    if name in scope.bands:
        scope.names[name] = name
    elif name in scope.aliases:
        scope.names[name] = scope.aliases[name]
    else:
        aliases = ", ".join(scope.aliases) or "-"
        raise ExpressionError(name, f"unknown band in {scope.text!r} (bands: "
                              f"{', '.join(scope.bands)}; aliases: {aliases})")  # fmt: skip


def _check_op(op: ast.AST, allowed: dict, scope: _Scope) -> None:
    if type(op) not in allowed:
        symbol = _SYMBOLS.get(type(op), type(op).__name__)
        hint = " (use & | ~ for logic)" if symbol in ("and", "or", "not") else ""
        raise ExpressionError(symbol, f"operator not allowed in {scope.text!r}{hint}")


def _check_call(node: ast.Call, scope: _Scope) -> None:
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            raise ExpressionError(f".{node.func.attr}", "attribute access is not allowed in "
                                  f"{scope.text!r}")  # fmt: skip
        raise ExpressionError(ast.unparse(node.func), "only the named functions can be called")
    name = node.func.id
    if name not in FUNCTIONS:
        raise ExpressionError(f"{name}()", f"unknown function in {scope.text!r}; allowed: "
                              f"{', '.join(FUNCTIONS)}")  # fmt: skip
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise ExpressionError(f"{name}()", "takes positional arguments only")
    if len(node.args) != FUNCTIONS[name]:
        raise ExpressionError(f"{name}()", f"takes {FUNCTIONS[name]} arguments, "
                              f"got {len(node.args)}")  # fmt: skip
    for arg in node.args:
        _check(arg, scope)


def _truth(x) -> np.ndarray:
    return np.asarray(x) != 0


def _divide(a, b):
    b = np.asarray(b, dtype=np.float64)
    return np.where(b == 0, np.nan, np.divide(a, np.where(b == 0, 1.0, b)))


_BIN_FN: dict[type, Callable] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: _divide,
    ast.Pow: np.power,
    ast.BitAnd: lambda a, b: (_truth(a) & _truth(b)).astype(np.float64),
    ast.BitOr: lambda a, b: (_truth(a) | _truth(b)).astype(np.float64),
}  # fmt: skip
_CMP_FN: dict[type, Callable] = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater,
                                 ast.GtE: np.greater_equal, ast.Eq: np.equal,
                                 ast.NotEq: np.not_equal}  # fmt: skip
_CALL_FN: dict[str, Callable] = {
    "where": lambda c, a, b: np.where(_truth(c), a, b), "abs": np.abs, "sqrt": np.sqrt,
    "log": np.log, "exp": np.exp, "clip": lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
    "minimum": np.minimum, "maximum": np.maximum,
}  # fmt: skip


def _eval(node: ast.AST, values: dict[str, np.ndarray], names: dict[str, str]):
    """A checked tree over float64 arrays (the checker already refused everything else)."""
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[names[node.id]]
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, values, names), _eval(node.right, values, names)
        return _BIN_FN[type(node.op)](np.asarray(a, dtype=np.float64), b)
    if isinstance(node, ast.UnaryOp):
        x = np.asarray(_eval(node.operand, values, names), dtype=np.float64)
        if isinstance(node.op, ast.Invert):
            return (~_truth(x)).astype(np.float64)
        return -x if isinstance(node.op, ast.USub) else x
    if isinstance(node, ast.Compare):
        left, out = _eval(node.left, values, names), None
        for op, sub in zip(node.ops, node.comparators, strict=True):
            right = _eval(sub, values, names)
            step = _CMP_FN[type(op)](left, right)
            out, left = step if out is None else (out & step), right
        return np.asarray(out).astype(np.float64)
    args = [_eval(a, values, names) for a in node.args]  # ast.Call
    return _CALL_FN[node.func.id](*args)
