"""Every attack of the injection suite is contained (tests/injection_suite.py says how)."""

from pathlib import Path

import pytest

from tests.injection_suite import ATTACKS, Attack, run_attack


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_contained(tmp_path: Path, attack: Attack) -> None:
    outcome = run_attack(tmp_path, attack)
    assert outcome.breaches == [], f"{attack.goal}: {outcome.breaches}"
    assert outcome.contained
