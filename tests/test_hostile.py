"""A short round of the hostile-network bench (bench/hostile.py): every attack against
a gateway of its own, with legitimate clients on every face. The figures (shares served, loop lag,
memory) are the bench's to print; here: the gateway survives each attack, logs no error and keeps
its log quiet."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HOSTILE = Path(__file__).resolve().parents[1] / "bench" / "hostile.py"
QUIET_LOG = 1024  # bytes a second


@pytest.mark.timeout(960)  # beyond the bench's own bound
def test_every_attack_leaves_the_gateway_alive_quiet_and_answering() -> None:
    result = subprocess.run(
        [sys.executable, str(HOSTILE), "--seconds", "1", "--quiet", "1"], capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    attacks = {attack["attack"]: attack for attack in report["attacks"]}
    assert len(attacks) == 18
    for name, attack in attacks.items():
        assert attack["gateway_alive_afterwards"], name
        assert attack["errors_logged"] == 0, (name, attack.get("first_error"))
        assert attack["log_bytes_per_s"] <= QUIET_LOG, (name, attack["log_lines_by_event"])
        assert "attack_failed" not in attack, (name, attack["attack_failed"])
        # the legitimate clients were answered before the attack: the bench measures something
        assert all(served["before"] > 0 for served in attack["served"].values()), (name, attack["served"])
