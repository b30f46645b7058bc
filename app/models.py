"""Model strings ('provider:model') to chat models.

Hosted models go through LangChain's `init_chat_model`; `scripted:NAME_OR_PATH` plays a scenario
offline. Configuration mistakes are `ModelConfigError`s with a message for the user, checked
before a run starts so nobody pays for a planner call and then hits a missing key.

`PROVIDERS` says, for each provider planexec supports out of the box, which LangChain
integration `init_chat_model` needs, which planexec extra installs it, and which environment
variables carry its key, so a missing one is refused naming the command to run or the variable
to set.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # LangChain is imported when a model is loaded, not by `planexec runs`
    from langchain_core.language_models import BaseChatModel
    from langchain_core.tools import BaseTool


class ModelConfigError(ValueError):
    """A model string that cannot be used as configured."""


class FatalModelError(RuntimeError):
    """A model that cannot go on with this run at all (for a scripted model: a scenario with no
    reply for what it was asked). The graph ends the run with it rather than fail one step."""


@dataclass(frozen=True)
class Provider:
    """What a hosted provider needs before planexec can call it."""

    integration: str  # the module init_chat_model imports for it
    install: str  # the command that installs that module
    keys: tuple[str, ...]  # environment variables, any one of which holds the API key
    keyless_if: str = ""  # an environment variable that, when true, means no key is needed


PROVIDERS: dict[str, Provider] = {
    "anthropic": Provider(
        "langchain_anthropic", 'pip install "planexec[anthropic]"', ("ANTHROPIC_API_KEY",)
    ),
    # langchain-google-genai reads GOOGLE_API_KEY first, then GEMINI_API_KEY; on Vertex AI
    # (GOOGLE_GENAI_USE_VERTEXAI=true) it uses Google Cloud credentials instead of a key.
    "google_genai": Provider(
        "langchain_google_genai",
        'pip install "planexec[google]"',
        ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
        keyless_if="GOOGLE_GENAI_USE_VERTEXAI",
    ),
}


def _check_provider(spec: str, name: str, provider: Provider) -> None:
    """Refuse `spec` if its integration is not installed or no key is set."""
    try:
        importlib.import_module(provider.integration)
    except ImportError as exc:
        raise ModelConfigError(
            f"model {spec!r} needs the {name} integration ({provider.integration}), which is "
            f"not installed ({exc}). Install it with: {provider.install}"
        ) from exc
    keyless = os.environ.get(provider.keyless_if, "").lower() in ("1", "true", "yes")
    if not keyless and not any(os.environ.get(key) for key in provider.keys):
        raise ModelConfigError(
            f"model {spec!r} needs an API key: set {' or '.join(provider.keys)}. "
            "`planexec demo` runs offline with scripted models."
        )


def check_model(spec: str) -> None:
    """Raise ModelConfigError if `spec` cannot be loaded here and now (no network is used)."""
    provider, _, name = spec.partition(":")
    if not name:
        raise ModelConfigError(
            f"model {spec!r} is not 'provider:model' (for example 'openai:gpt-4o-mini' or "
            "'scripted:demo')"
        )
    if provider == "scripted":
        from app.scripted.scenarios import ScenarioError, load_scenario

        try:
            load_scenario(name)
        except ScenarioError as exc:
            raise ModelConfigError(str(exc)) from exc
        return
    if provider == "openai" and not (
        os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")
    ):
        raise ModelConfigError(
            f"model {spec!r} needs OPENAI_API_KEY (or OPENAI_BASE_URL for an "
            "OpenAI-compatible endpoint such as Ollama or vLLM). "
            "`planexec demo` runs offline with scripted models."
        )
    if provider in PROVIDERS:
        _check_provider(spec, provider, PROVIDERS[provider])
    # Building the client sends nothing; it fails on a missing package or key, which is what
    # must be found before a run starts, not in its first model call.
    try:
        _load(spec, os.environ.get("OPENAI_BASE_URL", ""))
    except ModelConfigError:
        raise
    except Exception as exc:
        raise ModelConfigError(f"cannot use model {spec!r}: {exc}") from exc


def describe_model_error(exc: BaseException) -> str:
    """A failed model call, for the user. When the endpoint could not be reached, say which one
    (OPENAI_BASE_URL for a local server) and why, so a stopped server or a wrong URL is obvious."""
    import openai

    text = str(exc) or type(exc).__name__
    chain: list[BaseException] = [exc]  # exc, its cause, the cause's cause, ...
    while len(chain) < 20 and (cause := chain[-1].__cause__ or chain[-1].__context__):
        chain.append(cause)
    failed = next((e for e in chain if isinstance(e, openai.APIConnectionError)), None)
    if failed is None:
        return text
    base_url = os.environ.get("OPENAI_BASE_URL", "")
    request = getattr(failed, "request", None)
    where = f"{base_url} (OPENAI_BASE_URL)" if base_url else str(getattr(request, "url", ""))
    why = str(chain[-1]) or text
    verb = (
        "did not answer in time"
        if isinstance(failed, openai.APITimeoutError)
        else "cannot be reached"
    )
    return f"the model endpoint {where} {verb}: {why}. Is the server running, and is the URL right?"


# Model calls that end -------------------------------------------------------------------------
# Every request has a timeout (Context.model_timeout_s). The planner and replanner nodes are
# retried by LangGraph's RetryPolicy (graphs/retries.py) on transient errors, so their clients do
# not retry as well (a black-hole endpoint then costs MODEL_NODE_ATTEMPTS timeouts, not 9); an
# executor step keeps the client's own retries, since a failed step call has no node retry.
CLIENT_RETRIES = 2
NODE_RETRIED_ROLES = ("planner", "replanner")
TRANSIENT_STATUS = frozenset({408, 409, 429})  # and every 5xx


def role_model(ctx: Any, role: str) -> BaseChatModel:
    """The chat model `ctx` (a Context) names for `role`, with its timeout and retries."""
    return load_chat_model(
        getattr(ctx, f"{role}_model"),
        timeout_s=ctx.model_timeout_s,
        max_retries=0 if role in NODE_RETRIED_ROLES else CLIENT_RETRIES,
    )


def is_transient(exc: BaseException) -> bool:
    """Whether a failed model call is worth trying again: a rate limit (429), a server error
    (5xx), a timeout or a connection that failed, anywhere in the exception's chain."""
    import openai

    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 20:
        if isinstance(current, openai.APIConnectionError | TimeoutError | ConnectionError):
            return True
        status = getattr(current, "status_code", None)
        if isinstance(status, int) and (status in TRANSIENT_STATUS or status >= 500):
            return True
        current, seen = current.__cause__ or current.__context__, seen + 1
    return False


def load_chat_model(
    spec: str, *, timeout_s: float | None = None, max_retries: int | None = None
) -> BaseChatModel:
    """A chat model for 'provider:model'; `timeout_s` bounds each request (None: the client's
    default), `max_retries` the client's own retries of transient errors."""
    check_model(spec)
    return _load(spec, os.environ.get("OPENAI_BASE_URL", ""), timeout_s, max_retries)


@lru_cache(maxsize=32)
def _load(
    spec: str, base_url: str, timeout_s: float | None = None, max_retries: int | None = None
) -> BaseChatModel:
    # Cached per base URL: models are stateless, and building a client per call is wasted work.
    provider, _, name = spec.partition(":")
    if provider == "scripted":
        from app.scripted.chat_model import ScriptedChatModel

        return ScriptedChatModel(scenario=name)
    from langchain.chat_models import init_chat_model

    kwargs: dict = {}
    if timeout_s is not None:
        kwargs["timeout"] = timeout_s
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    if provider == "openai":
        # Streamed replies (stream_mode="messages", Studio) then carry token usage too.
        kwargs["stream_usage"] = True
    if provider == "openai" and base_url and not os.environ.get("OPENAI_API_KEY"):
        # Local OpenAI-compatible servers accept any key; the client insists on one.
        kwargs["api_key"] = "not-needed"
    try:
        return init_chat_model(spec, **kwargs)
    except (ImportError, ValueError) as exc:
        raise ModelConfigError(f"cannot load model {spec!r}: {exc}") from exc


def tools_for_model(spec: str, tools: list[BaseTool]) -> list[BaseTool]:
    """The tools a run of executor model `spec` uses: `tools` as they are, except that a scripted
    scenario wraps the ones its faults name (so the graph never has to know about scenarios)."""
    provider, _, name = spec.partition(":")
    if provider != "scripted":
        return tools
    from app.scripted.faults import with_faults
    from app.scripted.scenarios import load_scenario

    return with_faults(tools, list(load_scenario(name).faults))
