"""mibs/BCPM-GATEWAY-MIB.txt: written from the tree, clean for smilint, and what the agent serves.

smilint and snmptranslate need the IETF base MIBs the module imports from, which Debian does not
ship; the tests keep them in tests/snmp/ietf-mibs (SNMPv2-SMI, -TC, -CONF and -MIB, as net-snmp
distributes them).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.snmp.mib import render
from gateway.snmp.placement import default_layout
from gateway.snmp.tree import BASE
from tests.snmp.netsnmp import IETF_MIBS, MIB_FILE, dotted, run, varbinds
from tests.support import eventually

MODULE = "BCPM-GATEWAY-MIB"
# smilint levels: 1-2 errors, 3-4 warnings that matter, 5-6 minor; judge the text, not the exit code.
SMILINT_LEVEL = "6"
_TREE_LINE = re.compile(r"\+-- (....) .* (\w+)\((\d+)\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def mib_path() -> str:
    return f"{IETF_MIBS}:{MIB_FILE.parent}"


def test_the_mib_file_is_what_the_tree_renders() -> None:
    assert MIB_FILE.read_text() == render(default_layout()), (
        "mibs/BCPM-GATEWAY-MIB.txt is stale: python -m gateway.snmp.mib > mibs/BCPM-GATEWAY-MIB.txt"
    )


def test_smilint_reports_nothing(mib_path, tmp_path) -> None:
    result = run(tmp_path, "smilint", "-s", "-m", "-l", SMILINT_LEVEL, MODULE, env_extra={"SMIPATH": mib_path})
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""


def test_smilint_does_report_a_broken_module(mib_path, tmp_path) -> None:
    broken = tmp_path / f"{MODULE}.txt"
    broken.write_text(MIB_FILE.read_text().replace("::= { bcpmBranchEntry 7 }", "::= { bcpmBranchEntry 6 }"))
    result = run(tmp_path, "smilint", "-s", "-l", SMILINT_LEVEL, str(broken), env_extra={"SMIPATH": mib_path})
    assert "[" in result.stdout + result.stderr  # a severity-tagged message: the check above can fail


def test_snmptranslate_resolves_names_both_ways(mib_path, tmp_path) -> None:
    def translate(*args: str) -> str:
        result = run(tmp_path, "snmptranslate", "-M", mib_path, "-m", MODULE, *args)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert translate("-On", f"{MODULE}::bcpmAdvancedFeatures.0") == ".1.3.6.1.4.1.3833.1.30.1.1.6.3.4.0"
    assert translate("-On", f"{MODULE}::bcpmBranchCurrent.1.12") == ".1.3.6.1.4.1.3833.1.30.1.5.1.1.7.1.12"
    assert translate(".1.3.6.1.4.1.3833.1.30.1.2.0.1") == f"{MODULE}::bcpmChannelAlarmRaised"
    assert translate("-Td", f"{MODULE}::bcpmBranchCurrent").count('UNITS\t\t"mA"') == 1


def mib_objects(mib_path: str, folder: Path) -> dict[tuple[int, ...], str]:
    """{OID: access flags} of every object in our module and SNMPv2-MIB, as net-snmp parses them."""
    labels = run(folder, "snmptranslate", "-M", mib_path, "-m", f"{MODULE}:SNMPv2-MIB", "-Tz").stdout
    oid_of = {
        label: tuple(int(n) for n in oid.split("."))
        for label, oid in re.findall(r'^"(\w+)"\s+"([0-9.]+)"$', labels, re.MULTILINE)
    }
    objects = {}
    for root in (dotted(BASE), ".1.3.6.1.2.1.1", ".1.3.6.1.2.1.11"):
        tree = run(folder, "snmptranslate", "-M", mib_path, "-m", f"{MODULE}:SNMPv2-MIB", "-Tp", root).stdout
        for flags, label, _ in _TREE_LINE.findall(tree):
            objects[oid_of[label]] = flags
    return objects


async def test_the_agent_serves_exactly_the_readable_objects_of_the_mib(mib_path, snmp_agent, tmp_path) -> None:
    agent = await snmp_agent(1)  # model A: every column of the module has instances
    await eventually(agent.all_values_present, 20, "every instance read once")
    walked = []
    for root in (dotted(BASE), ".1.3.6.1.2.1.1", ".1.3.6.1.2.1.11"):
        result = await agent.tool("snmpbulkwalk", "-Cr50", root)
        assert result.returncode == 0, result.stderr
        walked += [vb.oid for vb in varbinds(result.stdout) if not vb.exception]
    objects = mib_objects(mib_path, tmp_path)
    readable = {oid for oid, flags in objects.items() if "R" in flags}

    def object_of(oid: tuple[int, ...]) -> tuple[int, ...] | None:
        return next((oid[:n] for n in range(len(oid) - 1, 0, -1) if oid[:n] in objects), None)

    not_in_mib = [dotted(oid) for oid in walked if object_of(oid) not in readable]
    assert not_in_mib == []
    served_objects = {object_of(oid) for oid in walked}
    ours = {oid for oid in readable if oid[: len(BASE)] == BASE}
    assert sorted(dotted(oid) for oid in ours - served_objects) == []


async def test_a_circuits_name_is_served_by_its_name_in_the_mib(mib_path, snmp_agent) -> None:
    agent = await snmp_agent(1)
    await eventually(agent.all_values_present, 20, "every instance read once")

    async def names(*channels: int) -> list[str]:
        oids = [f"{MODULE}::bcpmChanConfigName.1.{channel}" for channel in channels]
        result = await agent.tool("snmpget", "-M", mib_path, "-m", MODULE, "-Oqv", *oids)
        assert result.returncode == 0, result.stderr
        return [line.strip('"') for line in result.stdout.splitlines()]

    assert await names(12, 43) == ["", ""]  # none yet: empty
    await agent.gateway.nodes.name_circuits(1, {12: "Rack C3 PDU B", 43: "Mains L1"})
    assert await names(12, 43, 13) == ["Rack C3 PDU B", "Mains L1", ""]
    await agent.gateway.nodes.name_circuits(1, {12: "Rack C4 PDU A"})  # a rename shows at once
    assert await names(12) == ["Rack C4 PDU A"]
