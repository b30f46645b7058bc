"""Running the graph's async nodes from its sync API (`graph.invoke`, `graph.stream`, the CLI).

The nodes are async-native; their sync faces hand the coroutine to one event loop that lives in
a background thread for the whole process, and wait for it. One loop, not `asyncio.run` per
node: async clients (the OpenAI client's connection pool, MCP sessions) belong to the loop they
were first used on, and a closed loop leaves them broken for the next node ("Event loop is
closed"). The caller's context (LangGraph config, tracing) goes with the coroutine.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
# Each waiter's future, with the loop its coroutine runs on: a dying loop fails its own waiters
# only, not those of the loop that replaced it.
_pending: dict[concurrent.futures.Future[Any], asyncio.AbstractEventLoop] = {}


def _background_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _lock:
        # A loop that is not running is dead or dying (its thread's `finally` may not have
        # closed it yet): work handed to it would never run, and its caller would wait forever.
        if _loop is None or not _loop.is_running():
            _loop = asyncio.new_event_loop()
            ready = threading.Event()
            thread = threading.Thread(
                target=_serve, args=(_loop, ready), name="planexec-loop", daemon=True
            )
            thread.start()
            if not ready.wait(timeout=10):
                raise RuntimeError("the planexec event loop did not start within 10 s")
        return _loop


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        # The loop died (a KeyboardInterrupt raised inside a task ends run_forever): no waiter
        # may hang on it.
        for future, owner in list(_pending.items()):
            if owner is loop and not future.done():
                future.set_exception(RuntimeError("the planexec event loop stopped"))
        loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on the background loop, in a copy of the caller's context, and wait for it.
    If the wait is interrupted (Ctrl-C with the default handler), the coroutine is cancelled."""
    loop = _background_loop()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    _pending[done] = loop
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro)
        tasks.append(task)
        task.add_done_callback(lambda t: _settle(t, done))

    loop.call_soon_threadsafe(start, context=contextvars.copy_context())
    try:
        return done.result()
    except BaseException:
        if not done.done():
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
        raise
    finally:
        _pending.pop(done, None)


def _settle(task: asyncio.Task[T], done: concurrent.futures.Future[T]) -> None:
    if done.done():
        return
    if task.cancelled():
        done.set_exception(asyncio.CancelledError())
    elif task.exception() is not None:
        done.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        done.set_result(task.result())


async def in_own_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a daemon thread of its own, in a copy of the caller's context, awaited.

    For calls that may never return (a sync tool past its timeout): such a call holds only its
    own thread. In the loop's shared pool it would hold a slot for good, and once every slot was
    held, every `asyncio.to_thread` of the run (its journal writes) would wait behind it; and a
    pool's threads are joined at exit, so the process could not end."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # given up on (cancelled by a timeout): the answer is dropped
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        result, error = None, None
        try:
            result = context.run(func, *args)
        except StopIteration as exc:  # a future refuses it (it would never settle): as LangChain
            error = RuntimeError(f"{type(exc).__name__} raised")
            error.__cause__ = exc
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            error = exc
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=work, name="planexec-tool", daemon=True).start()
    return await future


def awaits_natively(tool: Any) -> bool:
    """Whether awaiting LangChain `tool` runs a coroutine of its own; if not, `ainvoke` would
    run its sync code on the event loop's shared thread pool (see `in_own_thread`). A tool that
    wraps another says so for it with a `native_async` attribute."""
    native = getattr(tool, "native_async", None)
    if native is not None:
        return bool(native)
    if "coroutine" in type(tool).model_fields:  # StructuredTool, Tool: a coroutine or not
        return tool.coroutine is not None
    from langchain_core.tools import BaseTool  # only when a tool is called: startup stays light

    return type(tool)._arun is not BaseTool._arun  # a BaseTool subclass with its own `_arun`


async def invoke_tool(tool: Any, call: dict[str, Any]) -> Any:
    """`tool` called with `call` (a tool call dict): its own coroutine awaited, or its sync code
    in a thread of its own (`in_own_thread`), never on the loop's shared pool, which a sync tool
    stuck past its timeout would hold a slot of for good."""
    if awaits_natively(tool):
        return await tool.ainvoke(call)
    return await in_own_thread(tool.invoke, call)
