"""Under systemd: READY and WATCHDOG notifications, SIGHUP survived, a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support import config_file


def test_notifies_ready_feeds_the_watchdog_survives_sighup_and_stops_on_sigterm(make_line, tmp_path: Path) -> None:
    line = make_line(1)
    config = config_file(line, tmp_path, serial={"scan": "1-3"})
    notify_path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify_socket:
        notify_socket.bind(notify_path)
        notify_socket.settimeout(20)
        env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"}
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)], env=env, stderr=subprocess.DEVNULL
        )
        try:
            messages = []
            while not any(m.startswith("READY=1") for m in messages):  # the watchdog is fed from the start
                messages.append(notify_socket.recv(4096).decode())
                assert len(messages) < 200, messages
            assert set(messages[:-1]) <= {"WATCHDOG=1"}
            process.send_signal(signal.SIGHUP)
            assert notify_socket.recv(4096).decode() == "WATCHDOG=1"  # still alive and healthy
            assert process.poll() is None
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
            remaining = []
            notify_socket.settimeout(0.5)
            while True:
                try:
                    remaining.append(notify_socket.recv(4096).decode())
                except TimeoutError:
                    break
            assert "STOPPING=1" in remaining
        finally:
            process.kill()
            process.wait()
