"""`simulate`: argument checking, address grouping, and serving until a signal."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.sim.cli import add_arguments, board_addresses

from .master import Master

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simulate")
    add_arguments(parser)
    return parser.parse_args(["--link", "/tmp/unused", *argv])


@pytest.mark.parametrize(
    ("addresses", "boards"),
    [([1], [1]), ([1, 2], [1]), ([1, 5], [1, 5]), ([1, 2, 3], [1, 3]), ([2, 3, 4], [2, 4]), ([246, 247], [246])],
)
def test_addresses_group_into_boards(addresses: list[int], boards: list[int]) -> None:
    assert board_addresses(addresses) == boards


def test_cli_rejects_a_board_at_247(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--addresses", "1,247")
    assert exit_info.value.code == 2
    assert "a board at 247 would need address 248" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--addresses", "0"], "outside the Modbus range 1-247"),
        (["--addresses", "1,x"], "not a comma-separated list"),
        (["--crc-errors", "1.5"], "not a probability"),
        (["--flap", "2"], "not ADDRESS:SECONDS"),
        (["--turnaround", "-1"], "negative"),
        (["--model", "D"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert message in capsys.readouterr().err


def test_cli_defaults_serve_one_board_at_address_1() -> None:
    args = parse()
    assert (args.boards, args.model, args.baudrate, args.parity, args.emulate_wire) == ([1], "A", 19200, "N", True)
    assert args.turnaround == 0.005


@contextlib.contextmanager
def simulating(link: Path, *args: str) -> Iterator[str]:
    """`simulate` as a separate process serving at `link`; yields its banner, ends it with SIGTERM."""
    command = [sys.executable, "-m", "gateway.sim", "--link", str(link), "--no-wire-time", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as process:
        assert process.stdout is not None
        try:
            yield process.stdout.readline()
        finally:
            process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0


def test_simulate_serves_until_sigterm_and_removes_its_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyBCPM"
    with simulating(link, "--addresses", "3,9") as banner:
        assert "3/4, 9/10" in banner and str(link) in banner
        master = Master(str(link))
        assert master.registers(10, 60000) == [9]
        master.close()
    assert not os.path.lexists(link)


def test_simulate_with_a_load_serves_currents_that_move(tmp_path: Path) -> None:
    link = tmp_path / "ttyBCPM"
    with simulating(link, "--load", "office") as banner:
        assert "load office" in banner
        master = Master(str(link))
        first = master.registers(1, 1336, 42)
        time.sleep(1.0)
        second = master.registers(1, 1336, 42)
        master.close()
    assert sum(1 for amps in first if amps) > 30 and first != second


def test_simulate_refuses_a_bad_load_file_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "load.csv"
    bad.write_text("channel,amps\n50,3\n")
    command = [sys.executable, "-m", "gateway.sim", "--link", str(tmp_path / "tty"), "--load", str(bad)]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=30
    )
    assert result.returncode == 2
    assert f"load file {bad}, line 2" in result.stderr and "Traceback" not in result.stderr
