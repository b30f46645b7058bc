"""Safe arithmetic: an `ast` walker that only knows numbers, operators and a few functions.

Nothing is ever passed to eval/exec; every node type is whitelisted below.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from decimal import Decimal

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, Field

from tools.settings import ToolSettings

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 10_000
# Integers above this many digits are refused: they are slow to build and
# Python refuses to print ints over 4300 digits anyway.
MAX_RESULT_DIGITS = 4_000
MAX_RESULT_BITS = int(MAX_RESULT_DIGITS * math.log2(10))
# Ints longer than this are shown in scientific notation instead of in full.
MAX_EXACT_DIGITS = 30
SIGNIFICANT_DIGITS = 12

HINT = (
    "Use numbers and + - * / // % ** ( ) with sqrt, abs, round, min, max, "
    "log, exp, floor, ceil, pi, e."
)

Number = int | float

_BIN_OPS: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}


def _round(x: Number, ndigits: Number | None = None) -> Number:
    if ndigits is None:
        return round(x)
    if not isinstance(ndigits, int):
        raise _Refused("round's second argument must be a whole number")
    # round(5, -10**8) computes 10**10**8 first: cap the digits where the result is 0 anyway.
    return round(x, max(ndigits, -(MAX_RESULT_DIGITS + 1)))


# name -> (function, min args, max args or None for unlimited)
_FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "sqrt": (math.sqrt, 1, 1),
    "abs": (abs, 1, 1),
    "round": (_round, 1, 2),
    "min": (lambda *xs: min(xs), 1, None),
    "max": (lambda *xs: max(xs), 1, None),
    "log": (math.log, 1, 2),
    "exp": (math.exp, 1, 1),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


class _Refused(Exception):
    """The expression uses something outside the whitelist (or would be too big)."""


class _Failed(Exception):
    """The expression is allowed but has no finite numeric value (1/0, log(-1)...)."""


def evaluate(expression: str) -> str:
    """Evaluate `expression` and return the formatted result; raise ToolException otherwise."""
    shown = _shorten(expression)
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolException(
            f"calculator refused '{shown}': the expression is {len(expression)} characters, "
            f"over the {MAX_EXPRESSION_CHARS}-character limit. Split it into smaller steps."
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        value = _eval(tree.body)
    except _Refused as exc:
        raise ToolException(f"calculator refused '{shown}': {exc}. {HINT}") from None
    except SyntaxError:
        raise ToolException(
            f"calculator refused '{shown}': it is not a valid arithmetic expression. {HINT}"
        ) from None
    except RecursionError:
        raise ToolException(
            f"calculator refused '{shown}': the expression is nested too deeply."
        ) from None
    except _Failed as exc:
        raise ToolException(f"calculator could not evaluate '{shown}': {exc}.") from None
    return format_number(value)


def _eval(node: ast.AST) -> Number:
    if isinstance(node, ast.Constant):
        # bool is an int subclass; complex and str are not arithmetic here.
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _Refused(f"unsupported value {node.value!r}")
        if isinstance(node.value, float) and math.isinf(node.value):
            raise _Refused("a number literal is too large for a floating-point number")
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise _Refused(f"unknown name '{node.id}'")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _UNARY_OPS[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _apply(_BIN_OPS[type(node.op)], left, right)
    if isinstance(node, ast.Call):
        return _call(node)
    if isinstance(node, ast.Attribute):
        raise _Refused(f"attribute access '.{node.attr}' is not allowed")
    raise _Refused(f"{_describe(node)} is not allowed")


def _call(node: ast.Call) -> Number:
    if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
        name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
        raise _Refused(f"unknown function '{name}'")
    name = node.func.id
    if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
        raise _Refused(f"{name}() takes plain positional arguments only")
    func, low, high = _FUNCTIONS[name]
    if len(node.args) < low or (high is not None and len(node.args) > high):
        expected = (
            str(low) if low == high else f"{low} or more" if high is None else f"{low}-{high}"
        )
        raise _Refused(f"{name}() takes {expected} argument(s), got {len(node.args)}")
    args = [_eval(a) for a in node.args]
    return _apply(func, *args)


def _apply(func: Callable[..., Number], *args: Number) -> Number:
    """Run one operation and turn Python's math errors into _Failed/_Refused."""
    try:
        result = func(*args)
    except ZeroDivisionError:
        raise _Failed("division by zero") from None
    except OverflowError:
        raise _Failed("the result is too large for a floating-point number") from None
    except ValueError as exc:  # math domain errors, e.g. sqrt(-1), log(0)
        raise _Failed(f"math error ({exc})") from None
    if isinstance(result, complex):
        raise _Failed("the result is a complex number (e.g. a fractional power of a negative)")
    if isinstance(result, float) and not math.isfinite(result):
        raise _Failed("the result is not a finite number")
    if isinstance(result, int) and result.bit_length() > MAX_RESULT_BITS:
        raise _Refused(f"the result would have more than {MAX_RESULT_DIGITS} digits")
    return result


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse powers whose result would be huge *before* computing them (10**10**10)."""
    if abs(exponent) > MAX_EXPONENT:
        raise _Refused(f"exponent {format_number(exponent)} is larger than {MAX_EXPONENT}")
    if exponent > 0 and abs(base) > 1:
        digits = exponent * math.log10(abs(base))
        if digits > MAX_RESULT_DIGITS:
            raise _Refused(
                f"the power would have about {digits:.0f} digits (limit {MAX_RESULT_DIGITS})"
            )


def format_number(value: Number) -> str:
    """Exact ints when short, otherwise 12 significant digits; drop '.0' on whole floats."""
    if isinstance(value, int):
        if len(str(abs(value))) <= MAX_EXACT_DIGITS:
            return str(value)
        # Decimal keeps full precision where float(value) could overflow.
        mantissa, _, exponent = f"{Decimal(value):.{SIGNIFICANT_DIGITS - 1}e}".partition("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    if value == 0:
        return "0"  # also turns -0.0 into 0
    if value.is_integer() and abs(value) < 10**15:
        return str(int(value))
    return f"{value:.{SIGNIFICANT_DIGITS}g}"


def _describe(node: ast.AST) -> str:
    kinds = {
        ast.Compare: "comparison",
        ast.BoolOp: "'and'/'or'",
        ast.Subscript: "subscript",
        ast.Lambda: "lambda",
        ast.IfExp: "if/else expression",
        ast.List: "list",
        ast.Tuple: "tuple",
        ast.Dict: "dict",
        ast.Set: "set",
        ast.JoinedStr: "f-string",
        ast.NamedExpr: "assignment (:=)",
    }
    if isinstance(node, ast.BinOp):
        return f"operator '{type(node.op).__name__}'"
    if isinstance(node, ast.UnaryOp):
        return f"unary operator '{type(node.op).__name__}'"
    return kinds.get(type(node), f"'{type(node).__name__}' syntax")


def _shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CalculatorArgs(BaseModel):
    expression: str = Field(
        description="Arithmetic expression, e.g. '(3.5 + 2) * sqrt(16) / 7' "
        "or 'round(100 * 17 / 23, 2)'."
    )


CALCULATOR_DESCRIPTION = (
    "Evaluate an arithmetic expression exactly and return the number. Supports integers and "
    "decimals, + - * / // % ** and parentheses, the functions sqrt, abs, round(x[, digits]), "
    "min, max, log(x[, base]), exp, floor, ceil, and the constants pi and e. No variables, "
    "units, text or other functions: substitute the numbers yourself. Use this instead of "
    "doing arithmetic in your head."
)


def make_calculator_tools(settings: ToolSettings | None = None) -> list[BaseTool]:
    """Build the calculator tool (settings are unused; accepted for a uniform factory signature)."""
    return [
        StructuredTool.from_function(
            func=evaluate,
            name="calculator",
            description=CALCULATOR_DESCRIPTION,
            args_schema=CalculatorArgs,
        )
    ]
