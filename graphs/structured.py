"""Structured model calls that survive malformed output.

The planner and replanner must return a schema. When a reply does not parse, or parses but breaks
a rule (`validate` returns problems), the reply and the problems go back to the model and it tries
again, up to `retries` more times. After that the caller gets the last error, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.runnables.config import ensure_config, merge_configs
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, ValidationError

from app.usage import merge_usage, usage_of_call
from prompts.untrusted import storable, storable_message

if TYPE_CHECKING:
    from graphs.planner_lookups import Lookups

T = TypeVar("T", bound=BaseModel)
MAX_PROBLEMS = 20  # told back to the model per rejected reply
PROBLEM_CHARS = 400  # of each one: a plan line or a cycle of a thousand ids is quoted in part


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
    parse_text: Callable[[str], T] | None = None,
    **meta: Any,
) -> StructuredResult:
    """Ask `model` for a `schema`, feeding parse and rule errors back up to `retries` times
    (with `parse_text`, for text in the format the prompt gives: see `acall_structured`)."""
    talk = _Conversation(
        model, schema, messages, role, model_name, validate, meta, parse_text=parse_text
    )
    for attempt in range(retries + 1):
        talk.out.attempts = attempt + 1
        try:
            reply = talk.runnable.invoke(talk.messages, config=talk.config())
        except Exception as exc:
            raise StructuredCallError(exc, talk.out.usage) from exc
        if talk.take(reply):
            break
    return talk.out


async def acall_structured(
    model: BaseChatModel,
    schema: type[T],
    messages: list[BaseMessage],
    *,
    role: str,
    model_name: str,
    validate: Callable[[T], list[str]],
    retries: int = 2,
    callbacks: Sequence[BaseCallbackHandler] = (),
    parse_text: Callable[[str], T] | None = None,
    lookups: Lookups | None = None,
    **meta: Any,
) -> StructuredResult:
    """`call_structured` on the event loop; `callbacks` see each attempt's model call (the
    streaming planner reads the reply as it arrives through one). With `parse_text` the model
    is asked for plain text (the prompt says its format), which `parse_text` turns into a
    `schema` or rejects with a ValueError saying what is wrong. With `lookups` (text only) the
    model may first call those tools; their rounds are not attempts (graphs/planner_lookups.py)."""
    talk = _Conversation(
        model, schema, messages, role, model_name, validate, meta, callbacks, parse_text
    )
    if lookups is not None and parse_text is None:
        raise ValueError("look-ups need a text reply (parse_text)")
    attempt = 0
    while attempt <= retries:
        talk.out.attempts = attempt + 1
        runnable = lookups.bind(talk.runnable) if lookups else talk.runnable
        try:
            reply = await runnable.ainvoke(talk.messages, config=talk.config())
        except Exception as exc:
            raise StructuredCallError(exc, talk.out.usage) from exc
        if lookups is not None and lookups.wants(reply):
            talk.account(reply)
            talk.messages += [reply, *await lookups.answer(reply)]
            continue  # ends: each round spends look-ups, and none left means no tools offered
        if talk.take(reply):
            break
        attempt += 1
    return talk.out


class _Conversation:
    """One structured call's attempts: the messages so far, and what each reply means."""

    def __init__(
        self,
        model: BaseChatModel,
        schema: type[BaseModel],
        messages: list[BaseMessage],
        role: str,
        model_name: str,
        validate: Callable[[Any], list[str]],
        meta: dict[str, Any],
        callbacks: Sequence[BaseCallbackHandler] = (),
        parse_text: Callable[[str], Any] | None = None,
    ) -> None:
        # The schema goes to the model as a dict and the reply is validated here: given the
        # Pydantic class, ChatOpenAI's default method (json_schema) has the OpenAI client
        # validate the reply inside the model call, which raises instead of returning a parsing
        # error, so one reply that broke the schema would end the run instead of being fed back.
        json_schema = _json_schema(schema)
        self.name = json_schema["title"]  # what the model is told the schema is called
        self.parse_text = parse_text
        self.runnable = (
            model if parse_text else model.with_structured_output(json_schema, include_raw=True)
        )
        self.schema, self.role, self.model_name = schema, role, model_name
        self.validate, self.meta, self.callbacks = validate, meta, list(callbacks)
        self.messages = list(messages)
        self.out = StructuredResult()

    def config(self) -> dict[str, Any]:
        config = call_config(self.role, **self.meta)
        if self.callbacks:
            # Added to the callbacks the call inherits (tracing, LangGraph's message stream),
            # not in their place.
            inherited = ensure_config().get("callbacks")
            config["callbacks"] = merge_configs(
                {"callbacks": inherited}, {"callbacks": self.callbacks}
            )["callbacks"]
        return config

    def take(self, reply: dict[str, Any] | AIMessage) -> bool:
        """Account for one reply; True when it is the answer, else the problems go back."""
        # What the model said, as text that can be stored and sent (prompts/untrusted.py); the
        # streaming planner reads the same text (graphs/plan_stream.py).
        if isinstance(reply, AIMessage):  # asked for text (parse_text)
            reply = self._parsed_text(storable_message(reply))
        else:
            reply = {**reply, "raw": storable_message(reply["raw"])}
            reply["parsed"] = storable(reply.get("parsed"))
        schema = self.schema
        raw: AIMessage = reply["raw"]
        self.account(raw)
        parsed, error = reply.get("parsed"), reply.get("parsing_error")
        if error is None and parsed is not None:
            try:
                parsed = schema.model_validate(parsed)
            except ValidationError as exc:
                error = exc
        if error is not None and self.parse_text:
            # A parser's list of problems (plan_text.PlanTextError) is summarized like a check's.
            listed = getattr(error, "problems", None) or [str(error)]
            problems = [f"the reply could not be read: {listed[0]}", *listed[1:]]
        elif error is not None:
            problems = [f"the reply does not match the {self.name} schema: {error}"]
        elif parsed is None:
            problems = [f"no {self.name} was returned; reply with the {self.name} tool"]
        else:
            try:
                problems = self.validate(parsed)
            except Exception as exc:  # a check that chokes on the reply: still the reply's problem
                problems = [f"the reply could not be checked ({type(exc).__name__}); simplify it"]
        if not problems:
            self.out.value, self.out.error = parsed, ""
            return True
        self.out.error = summarize(problems)
        self.messages += [raw, *_feedback(raw, self.out.error)]
        return False

    def account(self, raw: AIMessage) -> None:
        """Count one reply's usage (every reply is paid for, whatever it holds)."""
        self.out.usage = merge_usage(self.out.usage, usage_of_call(self.role, raw, self.model_name))

    def _parsed_text(self, raw: AIMessage) -> dict[str, Any]:
        """A text reply in with_structured_output's include_raw form."""
        assert self.parse_text is not None
        try:
            return {"raw": raw, "parsed": self.parse_text(str(raw.text)), "parsing_error": None}
        except ValueError as exc:
            return {"raw": raw, "parsed": None, "parsing_error": exc}
        except Exception as exc:  # a parser bug must not end the run as the model's failure
            error = ValueError(f"{type(exc).__name__} while reading it")
            return {"raw": raw, "parsed": None, "parsing_error": error}


def summarize(problems: list[str]) -> str:
    """The problems told to the model (and, after the last retry, the run's reason): the first
    MAX_PROBLEMS, each cut at PROBLEM_CHARS. A degenerate reply of 64 KB had 32,768 problems,
    4.4 MB of text, which no context window holds and which the run's reason then kept."""
    shown = [p if len(p) <= PROBLEM_CHARS else p[: PROBLEM_CHARS - 1] + "…" for p in problems]
    text = "; ".join(shown[:MAX_PROBLEMS])
    if len(problems) > MAX_PROBLEMS:
        text += f"; and {len(problems) - MAX_PROBLEMS} more problem(s)"
    return text


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
