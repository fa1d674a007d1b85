"""Serial paths for the upstream port's tests: a socat pty pair (a null-modem cable), and raw access
to a pty end to write frames byte for byte."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
import tty
from pathlib import Path

import pytest


def socat() -> str:
    path = shutil.which("socat")
    if path is None:
        pytest.fail("socat is not installed (Debian package socat; .ci/install-tools installs it)")
    return path


class SocatPair:
    """Two ptys joined by socat: what one end writes, the other reads. Stopping it unplugs both ends;
    starting it again plugs them back under the same names."""

    def __init__(self, a: Path, b: Path) -> None:
        self.a, self.b = a, b
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([socat(), f"pty,raw,echo=0,link={self.a}", f"pty,raw,echo=0,link={self.b}"])
        deadline = time.monotonic() + 10
        while not (self.a.exists() and self.b.exists()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail("socat did not make its pty pair")
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


class RawEnd:
    """One end of a pty, opened raw: frames written and read byte for byte."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read(self, quiet: float = 0.3, limit: float = 3.0) -> bytes:
        """What arrives until the line has been quiet for `quiet` seconds (at most `limit`)."""
        received = b""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and select.select([self.fd], [], [], quiet)[0]:
            received += os.read(self.fd, 4096)
        return received

    def close(self) -> None:
        os.close(self.fd)
