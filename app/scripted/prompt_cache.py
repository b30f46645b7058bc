"""Cached prompt tokens the way OpenAI reports them, for the scripted model and the server.

OpenAI caches prompt prefixes automatically: a request whose first tokens were already sent
recently (same organisation, same model) reads them from the cache, and the response reports
them as `usage.prompt_tokens_details.cached_tokens`. Caching starts at prompts of 1,024 tokens
and hits come in increments of 128 tokens (OpenAI's Prompt Caching guide and cookbook), so the
cached count is always 0 or 1,024 + 128·k.

Here a "cache" is one `PromptCache` per scope: the scripted model keeps one per run (thread id)
and model, the server one per model it was asked for. A prompt's prefixes at those boundaries are
hashed (never stored), and a prompt's cached tokens are the longest such prefix seen before in its
scope. Both the number of scopes and the prefixes kept per scope are bounded, oldest out first,
so a caller sending endless distinct prompts cannot grow the server's memory.
"""

from __future__ import annotations

import hashlib
import threading
from array import array
from collections import OrderedDict
from collections.abc import Hashable, Sequence

MIN_CACHED_TOKENS = 1024  # prompts shorter than this are never cached
CACHE_INCREMENT = 128  # cached prefixes grow in steps of this many tokens
# At most 64 x 4,096 digests (~40 MB at worst): a scope holds ~500k tokens of distinct prefixes,
# far more than a run sends; past that, the least recently used go first.
MAX_SCOPES = 64  # runs (or models) whose prefixes are remembered at once
MAX_PREFIXES_PER_SCOPE = 4096


def cache_boundaries(prompt_tokens: int) -> range:
    """The prefix lengths a prompt of `prompt_tokens` tokens could be cached at."""
    return range(MIN_CACHED_TOKENS, prompt_tokens + 1, CACHE_INCREMENT)


def prefix_digests(tokens: Sequence[int]) -> list[tuple[int, bytes]]:
    """(length, digest of tokens[:length]) at every cache boundary of `tokens`."""
    out: list[tuple[int, bytes]] = []
    digest = hashlib.blake2b(digest_size=16)
    done = 0
    for length in cache_boundaries(len(tokens)):
        digest.update(array("q", tokens[done:length]).tobytes())
        done = length
        out.append((length, digest.copy().digest()))
    return out


class PromptCache:
    """Prefixes seen so far, per scope; thread-safe (parallel steps call the model at once)."""

    def __init__(
        self, max_scopes: int = MAX_SCOPES, max_prefixes: int = MAX_PREFIXES_PER_SCOPE
    ) -> None:
        self._lock = threading.Lock()
        self._scopes: OrderedDict[Hashable, OrderedDict[bytes, None]] = OrderedDict()
        self._max_scopes = max_scopes
        self._max_prefixes = max_prefixes

    def cached_tokens(self, scope: Hashable, tokens: Sequence[int]) -> int:
        """How many leading tokens of this prompt were cached (0 or 1,024 + 128·k), then
        remember its prefixes so a later prompt in `scope` that shares them hits."""
        digests = prefix_digests(tokens)
        with self._lock:
            seen = self._scopes.get(scope)
            if seen is None:
                seen = self._scopes[scope] = OrderedDict()
                while len(self._scopes) > self._max_scopes:
                    self._scopes.popitem(last=False)
            else:
                self._scopes.move_to_end(scope)
            cached = 0
            for length, digest in digests:
                if digest not in seen:
                    break  # prefixes nest: once one misses, every longer one misses too
                cached = length
            for _, digest in digests:
                seen[digest] = None
                seen.move_to_end(digest)  # recently used prefixes are the last to go
            while len(seen) > self._max_prefixes:
                seen.popitem(last=False)
            return cached

    def clear(self) -> None:
        with self._lock:
            self._scopes.clear()
