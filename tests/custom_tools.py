"""LangChain tools a user would keep in their own package, named by import path in tests."""

from langchain_core.tools import tool


@tool
def shout(text: str) -> str:
    """Return the text in capitals."""
    return text.upper()


@tool
def whisper(text: str) -> str:
    """Return the text in lower case."""
    return text.lower()


VOICES = [shout, whisper]
NOT_A_TOOL = "a string"


def plain_function(text: str) -> str:
    return text


@tool("calculator")
def another_calculator(expression: str) -> str:
    """A tool whose name is taken by a built-in one."""
    return expression
