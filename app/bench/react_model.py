"""A scripted chat model that plays a benchmark task as a ReAct agent would.

It answers by turn (how many replies it already gave): the tool calls of the task's next turn,
then the final answer. With `parallel_tool_calls=False` bound (as a LangChain agent sets it for a
provider), it makes one call per turn, in the same order. Token usage is counted with the same
BPE counter as planexec's scripted model, over the messages and tool schemas it really received,
cached input tokens by the same prompt-cache rule (one cache per model instance: the bench makes
one per agent run), and it sleeps the same simulated latency for what it outputs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from app.bench.latency import simulated_latency
from app.bench.tasks import Call, all_tasks
from app.scripted.prompt_cache import PromptCache
from app.scripted.tokens import count_reply, prompt_tokens, usage_metadata


class ScriptedReactModel(BaseChatModel):
    """Plays task `task` (a name from app.bench.tasks) as a ReAct agent's model."""

    task: str
    model_name: str = "gpt-4o"
    _prompt_cache: PromptCache = PrivateAttr(default_factory=lambda: PromptCache(max_scopes=1))

    @property
    def _llm_type(self) -> str:
        return "scripted-react"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        task = next(t for t in all_tasks() if t.name == self.task)
        turns: list[list[Call]] = task.react_turns
        if kwargs.get("parallel_tool_calls") is False:
            turns = [[call] for turn in turns for call in turn]
        turn = sum(isinstance(m, AIMessage) for m in messages)
        if turn < len(turns):
            calls = [
                {"name": c.tool, "args": c.args, "id": f"call_{turn}_{i}"}
                for i, c in enumerate(turns[turn])
            ]
            reply = AIMessage(content="", tool_calls=calls)
        else:
            reply = AIMessage(content=task.answer)
        time.sleep(simulated_latency(count_reply(reply)))
        tools = kwargs.get("tools") or []
        prompt = prompt_tokens(messages, tools)
        cached = self._prompt_cache.cached_tokens(self.model_name, prompt)
        reply.usage_metadata = usage_metadata(messages, tools, reply, cached, prompt)
        reply.response_metadata = {"model_name": self.model_name}
        return ChatResult(generations=[ChatGeneration(message=reply)])
