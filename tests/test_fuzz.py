"""A short round of the fuzz harness (bench/fuzz.py): every face of a running gateway (BACnet/IP,
SNMP, Modbus TCP and the web face, each on a free port) survives malformed input, logs no error,
keeps answering and keeps its memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"


@pytest.mark.timeout(660)  # beyond the bench's own bound
def test_malformed_input_on_every_face_crashes_nothing_logs_no_error_and_leaks_no_memory() -> None:
    result = subprocess.run(
        [sys.executable, str(FUZZ), "--inputs", "1500"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    faces = ("bacnet", "snmp", "modbus_tcp", "web")
    assert report["inputs_per_face"] == dict.fromkeys(faces, 1500)
    assert report["gateway_alive"] and report["crashes"] == 0
    assert report["faces_answer_afterwards"] == dict.fromkeys(faces, True)
    assert report["errors_logged"] == 0, report["first_errors"]
    assert report["memory_growth"] < 0.10
