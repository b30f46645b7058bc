"""The simulated latency of a model call, the same for every architecture in the benchmark.

0.35 s to the first token, then 12 ms per output token: roughly a hosted GPT-4o-class model.
Only model calls are simulated (slept); everything else the frameworks do is real.
"""

from __future__ import annotations

FIRST_TOKEN_S = 0.35
PER_OUTPUT_TOKEN_S = 0.012


def simulated_latency(output_tokens: int) -> float:
    return FIRST_TOKEN_S + PER_OUTPUT_TOKEN_S * output_tokens
