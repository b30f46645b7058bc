from pathlib import Path

import pytest
from langchain_core.tools import ToolException

from tools.calculator import make_calculator_tools
from tools.settings import ToolSettings


@pytest.fixture
def calculator(tmp_path: Path):
    (tool,) = make_calculator_tools(ToolSettings(workspace=tmp_path))
    return tool


def calc(tool, expression: str) -> str:
    return tool.invoke({"expression": expression})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(1 + 2) * 3", "9"),
        ("10 / 4", "2.5"),
        ("10 / 5", "2"),  # integral float shown without ".0"
        ("7 // 2", "3"),
        ("-7 % 3", "2"),
        ("2 ** 10", "1024"),
        ("2 ** -2", "0.25"),
        ("-(+3)", "-3"),
        ("0.1 + 0.2", "0.3"),  # 12 significant digits hide float noise
        ("2 ** 64", "18446744073709551616"),  # short ints stay exact
        ("sqrt(16) + abs(-2)", "6"),
        ("round(3.14159, 2)", "3.14"),
        ("min(4, 2, 8) + max(1, 9)", "11"),
        ("log(8, 2)", "3"),
        ("log(e)", "1"),
        ("exp(0)", "1"),
        ("floor(2.7) + ceil(2.1)", "5"),
        ("pi", "3.14159265359"),
        ("1_000 * 3", "3000"),
    ],
)
def test_evaluates_arithmetic(calculator, expression: str, expected: str) -> None:
    assert calc(calculator, expression) == expected


def test_huge_int_uses_scientific_notation(calculator) -> None:
    assert calc(calculator, "2 ** 200") == "1.60693804426e+60"


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("x + 1", "unknown name 'x'"),
        ("__import__('os')", "unknown function '__import__'"),
        ("open('f')", "unknown function 'open'"),
        ("(1).real", "attribute access '.real'"),
        ("math.sqrt(2)", "unknown function 'math.sqrt'"),
        ("().__class__", "attribute access '.__class__'"),
        ("'a' * 3", "unsupported value 'a'"),
        ("1 < 2", "comparison is not allowed"),
        ("[1, 2][0]", "subscript is not allowed"),
        ("(lambda: 1)()", "unknown function"),
        ("lambda: 1", "lambda is not allowed"),
        ("True + 1", "unsupported value True"),
        ("1 & 3", "operator 'BitAnd' is not allowed"),
        ("sqrt(x=4)", "plain positional arguments"),
        ("sqrt(1, 2)", "takes 1 argument(s), got 2"),
        ("1 +", "not a valid arithmetic expression"),
    ],
)
def test_refuses_non_arithmetic(calculator, expression: str, fragment: str) -> None:
    with pytest.raises(ToolException) as info:
        calc(calculator, expression)
    message = str(info.value)
    assert message.startswith(f"calculator refused '{expression}': ")
    assert fragment in message
    assert "Use numbers and + - * / // % **" in message  # tells the model what is allowed


def test_refusal_message_format(calculator) -> None:
    with pytest.raises(ToolException) as info:
        calc(calculator, "x + 1")
    assert str(info.value) == (
        "calculator refused 'x + 1': unknown name 'x'. Use numbers and + - * / // % ** ( ) "
        "with sqrt, abs, round, min, max, log, exp, floor, ceil, pi, e."
    )


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("10 ** 10 ** 10", "exponent 10000000000 is larger than 10000"),
        ("2 ** 20000", "exponent 20000 is larger than 10000"),
        ("9 ** 9999", "digits"),  # small exponent, but the result would be ~9500 digits
        ("(2 ** 4000) ** 4", "digits"),
        ("(9 ** 4000) * (9 ** 4000) * (9 ** 4000)", "more than 4000 digits"),
    ],
)
def test_refuses_huge_numbers(calculator, expression: str, fragment: str) -> None:
    with pytest.raises(ToolException, match="calculator refused") as info:
        calc(calculator, expression)
    assert fragment in str(info.value)


@pytest.mark.parametrize("expression", ["1 / 0", "5 // 0", "5 % 0", "0 ** -1"])
def test_division_by_zero(calculator, expression: str) -> None:
    with pytest.raises(ToolException) as info:
        calc(calculator, expression)
    assert str(info.value) == f"calculator could not evaluate '{expression}': division by zero."


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("sqrt(-1)", "math domain error"),
        ("log(0)", "math domain error"),
        ("exp(1000)", "too large"),
        ("1e308 * 10", "not a finite number"),
        ("(-8) ** 0.5", "complex number"),
    ],
)
def test_math_errors(calculator, expression: str, fragment: str) -> None:
    with pytest.raises(ToolException, match="calculator could not evaluate") as info:
        calc(calculator, expression)
    assert fragment in str(info.value)


def test_refuses_long_expression(calculator) -> None:
    expression = "+".join(["1"] * 300)  # 599 characters
    with pytest.raises(ToolException) as info:
        calc(calculator, expression)
    assert "599 characters, over the 500-character limit" in str(info.value)


def test_the_length_limit_allows_exactly_500_characters(calculator) -> None:
    at_limit = "+".join(["1"] * 249) + "+10"
    assert len(at_limit) == 500
    assert calc(calculator, at_limit) == "259"
    over = at_limit + "0"  # ...+100: 501 characters
    with pytest.raises(ToolException, match="501 characters, over the 500-character limit"):
        calc(calculator, over)


@pytest.mark.parametrize("expression", ["10 ** -20000", "2 ** -10001", "0.5 ** -20000"])
def test_a_huge_negative_exponent_is_refused_not_rounded_to_zero(
    calculator, expression: str
) -> None:
    # 10 ** -20000 is not 0, but a float can only say 0: the exponent bound applies both ways.
    with pytest.raises(ToolException) as info:
        calc(calculator, expression)
    exponent = expression.split("**")[1].strip()
    assert str(info.value).startswith(
        f"calculator refused '{expression}': exponent {exponent} is larger than 10000."
    )


@pytest.mark.parametrize(
    ("expression", "digits"),
    [
        ("9 ** 9999", 9541),
        # 3.8 million digits: computing it first would stall the step for seconds.
        ("(9 ** 4000) ** 1000", 3816970),
    ],
)
def test_a_power_with_too_many_digits_is_refused_before_it_is_computed(
    calculator, expression: str, digits: int
) -> None:
    # Only the pre-check says "would have": the check after computing says "would have more
    # than", and gets there only after the seconds this test exists to keep from being spent.
    with pytest.raises(ToolException) as info:
        calc(calculator, expression)
    assert f"the power would have about {digits} digits (limit 4000)" in str(info.value)


def test_tool_schema_and_description(calculator) -> None:
    assert calculator.name == "calculator"
    assert list(calculator.args) == ["expression"]
    assert "sqrt" in calculator.description


def test_round_to_a_huge_negative_digit_count_is_instant_and_exact(calculator) -> None:
    # int.__round__ would compute 10**100000000 first and stall the step for minutes.
    assert calculator.invoke({"expression": "round(5, -100000000)"}) == "0"
    assert calculator.invoke({"expression": "round(1234, -2)"}) == "1200"


@pytest.mark.parametrize("expression", ["1e999", "min(1e999, 5)", "-1e999 + 1"])
def test_a_literal_too_large_for_a_float_is_refused(calculator, expression: str) -> None:
    """Python reads 1e999 as inf: min(1e999, 5) would quietly be 5."""
    with pytest.raises(ToolException, match="too large for a floating-point number"):
        calc(calculator, expression)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # Integers are exact up to 30 digits, then 12 significant digits.
        ("10 ** 29", "1" + "0" * 29),
        ("10 ** 30", "1e+30"),
        # A whole float is shown as an integer only while a float holds it exactly: past 10**15
        # its digits would be made up.
        ("1e15 - 1", "999999999999999"),
        ("1e15 * 1.0", "1e+15"),
        ("2.0 ** 60", "1.15292150461e+18"),
    ],
)
def test_numbers_are_exact_where_they_can_be_and_never_invent_digits(
    calculator, expression: str, expected: str
) -> None:
    assert calc(calculator, expression) == expected
