"""Running net-snmp's command-line tools (an SNMP implementation this project did not write).

The tools read no configuration or MIB from this machine (SNMPCONFPATH and the persistent folder
point at the test's own folder, MIBS is empty): output is numeric, and the same everywhere.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Where each tool comes from (Debian), for the message when it is missing.
PACKAGES = {
    "snmpget": "snmp",
    "snmpbulkwalk": "snmp",
    "snmpbulkget": "snmp",
    "snmpwalk": "snmp",
    "snmpset": "snmp",
    "snmptrap": "snmp",
    "snmpinform": "snmp",
    "snmptranslate": "snmp",
    "snmptrapd": "snmptrapd",
    "smilint": "smitools",
}

REPO = Path(__file__).resolve().parents[2]
MIB_FILE = REPO / "mibs" / "BCPM-GATEWAY-MIB.txt"
#: The IETF base MIBs our module imports from (Debian ships none), kept with the tests.
IETF_MIBS = Path(__file__).resolve().parent / "ietf-mibs"

_LINE = re.compile(r"^(\.[0-9.]+) = (?:([A-Za-z0-9 -]+): )?(.*)$")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package {PACKAGES[name]}; .ci/install-tools installs it)")
    return path


def environment(folder: Path) -> dict[str, str]:
    (folder / "cert_indexes").mkdir(parents=True, exist_ok=True)  # else the tools say they made it, on stderr
    return {**os.environ, "SNMPCONFPATH": str(folder), "SNMP_PERSISTENT_DIR": str(folder), "MIBS": ""}


def run(
    folder: Path, name: str, *args: str, timeout: float = 60, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool(name), *args],
        capture_output=True,
        text=True,
        env={**environment(folder), **(env_extra or {})},
        timeout=timeout,
    )


async def run_async(folder: Path, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`run` off the event loop, so the gateway in this process keeps serving meanwhile."""
    return await asyncio.to_thread(run, folder, name, *args, timeout=timeout)


def error_of(result: subprocess.CompletedProcess[str]) -> str:
    """The error status net-snmp reports ("noAccess", ...), or "" when the request succeeded."""
    for line in result.stderr.splitlines():
        if line.startswith("Reason: "):
            return line.removeprefix("Reason: ").split()[0]
    return ""


@dataclass(frozen=True, slots=True)
class VarBind:
    oid: tuple[int, ...]
    type: str  # "INTEGER", "Gauge32", "STRING", ...; "" for an empty string or an exception
    value: str

    @property
    def exception(self) -> bool:
        """noSuchObject, noSuchInstance or endOfMibView (net-snmp prints them as a sentence)."""
        return not self.type and not self.value.startswith('"')

    @property
    def number(self) -> int:
        return int(self.value.split()[0])


def varbinds(output: str) -> list[VarBind]:
    """The varbinds of `-On` output, one a line ("OID = TYPE: value")."""
    found = []
    for line in output.splitlines():
        match = _LINE.match(line)
        if match:
            oid, kind, value = match.groups()
            found.append(VarBind(tuple(int(part) for part in oid.strip(".").split(".")), kind or "", value))
    return found


def dotted(oid: tuple[int, ...]) -> str:
    return "." + ".".join(map(str, oid))
