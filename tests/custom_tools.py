"""LangChain tools a user would keep in their own package, named by import path in tests."""

from langchain_core.tools import BaseTool, ToolException, tool


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


@tool("shout")
def shout_again(text: str) -> str:
    """A second tool named like `shout`."""
    return text.upper()


@tool
def wait_for_file(path: str) -> str:
    """Wait until the file at `path` exists (at most 60 s): a step a test holds open."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return f"{path} did not appear in 60 s"
        time.sleep(0.05)
    return f"{path} is there"


MIXED = [shout, "not a tool"]


@tool
def stall(seconds: float) -> str:
    """Sleep `seconds` in a thread, then answer: a sync tool that takes too long."""
    import time

    time.sleep(seconds)
    return "awake"


@tool
async def stall_async(seconds: float) -> str:
    """Sleep `seconds` on the event loop, then answer: an async tool that takes too long."""
    import asyncio

    await asyncio.sleep(seconds)
    return "awake"


class StallTool(BaseTool):
    """A sync tool written as a BaseTool subclass (only `_run`), as a user's package may."""

    name: str = "stall_class"
    description: str = "Sleep `seconds` in a thread, then answer."

    def _run(self, seconds: float) -> str:
        import time

        time.sleep(seconds)
        return "awake"


stall_class = StallTool()


@tool
def empty_next() -> str:
    """Take the next item of an empty iterator: raises StopIteration."""
    return next(iter([]))


@tool
def fail_loudly(chars: int) -> str:
    """Raise with a message of `chars` characters, as an MCP tool's error result arrives."""
    raise ToolException("e" * chars)


@tool(response_format="content_and_artifact")
def flood(chars: int, artifact_chars: int = 0) -> tuple[str, dict]:
    """Answer with `chars` characters (and an artifact of `artifact_chars`): a tool with no cap
    of its own, as an MCP server's or a user's may be."""
    return "x" * chars, {"blob": "y" * artifact_chars}
