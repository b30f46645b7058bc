"""Structured model calls that survive malformed output.

The planner and replanner must return a schema. When a reply does not parse, or parses but breaks
a rule (`validate` returns problems), the reply and the problems go back to the model and it tries
again, up to `retries` more times. After that the caller gets the last error, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from app.usage import merge_usage, usage_of_call

T = TypeVar("T", bound=BaseModel)


@dataclass
class StructuredResult:
    """What a structured call produced: the value (None on failure), its usage and last error."""

    value: Any = None
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    error: str = ""
    attempts: int = 0


class StructuredCallError(RuntimeError):
    """A model call raised during a structured call; `usage` holds the attempts answered (and
    paid for) before it."""

    def __init__(self, cause: Exception, usage: dict[str, dict[str, Any]]) -> None:
        super().__init__(str(cause))
        self.usage = usage


def call_config(role: str, **meta: Any) -> dict[str, Any]:
    """Config for one model call: role and step as metadata (LangSmith shows them; the scripted
    model reads them to pick its reply)."""
    metadata = {"planexec_role": role, **{f"planexec_{k}": v for k, v in meta.items()}}
    name = f"{role}:{meta['step']}" if "step" in meta else role
    return {"metadata": metadata, "tags": [f"planexec:{role}"], "run_name": name}


def call_structured(
    model: BaseChatModel,
    schema: type[T],
    messages: list[BaseMessage],
    *,
    role: str,
    model_name: str,
    validate: Callable[[T], list[str]],
    retries: int = 2,
    **meta: Any,
) -> StructuredResult:
    """Ask `model` for a `schema`, feeding parse and rule errors back up to `retries` times."""
    # The schema goes to the model as a dict and the reply is validated here: given the Pydantic
    # class, ChatOpenAI's default method (json_schema) has the OpenAI client validate the reply
    # inside the model call, which raises instead of returning a parsing error, so one reply
    # that broke the schema would end the run instead of being fed back and retried.
    json_schema = _json_schema(schema)
    name = json_schema["title"]  # what the model is told the schema is called
    runnable = model.with_structured_output(json_schema, include_raw=True)
    conversation = list(messages)
    out = StructuredResult()
    for attempt in range(retries + 1):
        out.attempts = attempt + 1
        try:
            reply = runnable.invoke(conversation, config=call_config(role, **meta))
        except Exception as exc:
            raise StructuredCallError(exc, out.usage) from exc
        raw: AIMessage = reply["raw"]
        out.usage = merge_usage(out.usage, usage_of_call(role, raw, model_name))
        parsed, error = reply.get("parsed"), reply.get("parsing_error")
        if error is None and parsed is not None:
            try:
                parsed = schema.model_validate(parsed)
            except ValidationError as exc:
                error = exc
        if error is not None:
            problems = [f"the reply does not match the {name} schema: {error}"]
        elif parsed is None:
            problems = [f"no {name} was returned; reply with the {name} tool"]
        else:
            problems = validate(parsed)
        if not problems:
            out.value, out.error = parsed, ""
            return out
        out.error = "; ".join(problems)
        conversation += [raw, *_feedback(raw, out.error)]
    return out


def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """`schema` as a titled JSON Schema dict: the same tool (or response_format) schema the model
    is sent for the class, but given as a dict no provider client validates the reply itself."""
    function = convert_to_openai_tool(schema)["function"]
    return {
        "title": function["name"],
        "description": function.get("description", ""),
        **function["parameters"],
    }


def _feedback(raw: AIMessage, error: str) -> list[BaseMessage]:
    text = f"That reply was rejected: {error}. Reply again with a corrected answer."
    # A reply with tool calls must be answered by tool messages, or the next request is invalid.
    if raw.tool_calls:
        return [ToolMessage(content=text, tool_call_id=c["id"]) for c in raw.tool_calls]
    return [HumanMessage(content=text)]
