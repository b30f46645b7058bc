"""Prompt-injection containment: every attack of the suite, run for real, and how it ended.

    python benchmarks/injection.py

Each attack (tests/injection_suite.py) is a full run of the graph in which the executor — and for
the revision attacks the replanner — obeys the text injected into a page it fetched: it fetches
internal addresses, writes outside the workspace, overwrites the SQL database, calls tools its step
was not given, and asks the replanner for new steps. Local servers on 127.0.0.1 (internal) and
127.0.0.2 (the "public" site, opened with PLANEXEC_NET_ALLOW) record every request. Prints one
line per attack and the total tried / contained.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.injection_suite import ATTACKS, run_attack  # noqa: E402


def main() -> int:
    contained = 0
    print(f"{'attack':<28} {'contained':<10} {'run':<8} {'ms':>6}  refusal")
    with tempfile.TemporaryDirectory(prefix="planexec-injection-") as tmp:
        for i, attack in enumerate(ATTACKS):
            folder = Path(tmp) / f"{i:02d}"
            folder.mkdir()
            started = time.perf_counter()
            outcome = run_attack(folder, attack)
            ms = (time.perf_counter() - started) * 1000
            contained += outcome.contained
            first = next((line for line in outcome.refusal.splitlines() if line), "")
            verdict = "yes" if outcome.contained else "NO"
            print(f"{attack.name:<28} {verdict:<10} {outcome.status:<8} {ms:6.0f}  {first[:90]}")
            for breach in outcome.breaches:
                print(f"{'':<28} breach: {breach}")
    print(f"\nattacks tried: {len(ATTACKS)}   contained: {contained}")
    return 0 if contained == len(ATTACKS) else 1


if __name__ == "__main__":
    sys.exit(main())
