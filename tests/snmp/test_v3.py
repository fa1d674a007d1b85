"""SNMPv3 (USM) against net-snmp's tools: every protocol net-snmp offers, SET, each refusal and its
Report, the engine's ID, boots and time across restarts, v2c turned off, the shipped [snmp]
section with a user, and notifications as v3 traps and informs."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pyasn1.codec.ber import decoder
from pysnmp.entity import config as pysnmp_config
from pysnmp.proto import rfc1902
from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from gateway.app import running
from gateway.config import load_config
from gateway.pointmap import load
from gateway.snmp import SnmpFace
from gateway.snmp.fast import UNKNOWN_CONTEXT
from gateway.snmp.notifications import COLD_START
from gateway.snmp.readers import SNMP_ENGINE, SNMP_GROUP, SYSTEM, UNKNOWN_CONTEXTS, USM_STATS
from gateway.snmp.tree import BASE
from gateway.snmp.usm import (
    DECRYPTION_ERRORS,
    REFUSALS,
    UNKNOWN_USER_NAMES,
    UNSUPPORTED_SEC_LEVELS,
    WRONG_DIGESTS,
)
from gateway.state import StateStore
from tests.snmp.netsnmp import dotted, environment, error_of, run_async, tool, varbinds
from tests.snmp.rig import (
    AUTH_PASSPHRASE,
    ENGINE_ID,
    NMS,
    PRIV_PASSPHRASE,
    READ,
    STANDARD_INSTANCES,
    Agent,
    TrapReceiver,
    V3User,
    instance,
)
from tests.support import config_file, eventually, free_port, gateway_config

PM = load()
CT_SIZE_5 = PM.find("ct_size", group="setup", channel=5)
SYS_DESCR = dotted(SYSTEM + (1, 0))
SNMP_IN_BAD_VERSIONS = SNMP_GROUP + (3, 0)
ENGINE_GROUP = [dotted(SNMP_ENGINE + (number, 0)) for number in (1, 2, 3)]  # ID, boots, time
ALARM_TABLE = dotted(BASE + (1, 2, 2))
SHIPPED = Path(__file__).resolve().parents[2] / "config" / "gateway.toml"
# One user for each pairing of protocols worth telling apart: every hash, every cipher, SHA-1's
# key extended for AES-192 and AES-256, and a user without privacy.
PROTOCOLS = [
    V3User(f"{auth}-{priv or 'none'}", auth, priv)
    for auth, priv in (
        ("sha1", "aes128"),
        ("sha1", "aes256"),
        ("sha224", "aes192"),
        ("sha256", "aes128"),
        ("sha384", "aes256"),
        ("sha512", "aes192"),
        ("sha256", None),
    )
]
MON = V3User("mon", "sha1", None)  # authNoPriv


def oids(result: Any) -> list[tuple[int, ...]]:
    return [vb.oid for vb in varbinds(result.stdout) if not vb.exception]


async def test_every_protocol_net_snmp_offers_reads_what_v2c_reads(snmp_agent) -> None:
    agent = await snmp_agent(1, users={user.name: user.settings() for user in PROTOCOLS})
    await eventually(agent.all_values_present, 20, "every instance read once")
    v2c = await agent.tool("snmpbulkwalk", "-Cr25", ALARM_TABLE)
    assert v2c.returncode == 0 and len(oids(v2c)) == 2 * 46 * 6
    for user in PROTOCOLS:
        walk = await agent.v3("snmpbulkwalk", "-Cr25", ALARM_TABLE, user=user)
        assert walk.returncode == 0 and walk.stderr == "", (user, walk.stderr)
        assert oids(walk) == oids(v2c), user
        get = await agent.v3("snmpget", SYS_DESCR, user=user)
        assert "BCPM gateway" in get.stdout, user
    whole = await agent.v3("snmpbulkwalk", "-Cr50", ".1", user=PROTOCOLS[-1])
    assert whole.returncode == 0 and len(oids(whole)) == len(agent.face.controller.index)
    next_walk = await agent.v3("snmpwalk", ALARM_TABLE, user=PROTOCOLS[0])  # GETNEXT
    assert oids(next_walk) == oids(v2c)


async def test_a_read_write_user_sets_at_authpriv_and_a_read_only_user_gets_no_access(snmp_agent) -> None:
    reader = V3User("reader")
    agent = await snmp_agent(1, users={"nms": NMS.settings(access="read-write"), "reader": reader.settings()})
    result = await agent.v3("snmpset", instance(CT_SIZE_5, 2), "u", "200")
    assert result.returncode == 0, result.stderr
    assert agent.line.panel(2).read(CT_SIZE_5.register, 1) == [200]
    refused = await agent.v3("snmpset", instance(CT_SIZE_5, 1), "u", "200", user=reader)
    assert error_of(refused) == "noAccess"
    assert agent.line.panel(1).read(CT_SIZE_5.register, 1) == [100]
    [got] = varbinds((await agent.v3("snmpget", instance(CT_SIZE_5, 2), user=reader)).stdout)
    assert got.number == 200


async def test_each_refusal_gets_its_report_and_counter_and_at_most_one_log_line(snmp_agent) -> None:
    agent = await snmp_agent(1, users={"nms": NMS.settings(), "mon": MON.settings()})
    cases = {  # usmStats counter: (the manager's options, what net-snmp makes of the Report)
        WRONG_DIGESTS: (NMS.options(auth="not-the-passphrase"), "Authentication failure"),
        DECRYPTION_ERRORS: (NMS.options(priv="not-the-passphrase"), "Decryption error"),
        UNKNOWN_USER_NAMES: (V3User("nobody").options(), "Unknown user name"),
        UNSUPPORTED_SEC_LEVELS: (V3User("mon", "sha1", "aes128").options(), "Unsupported security level"),
    }
    classes = [*(REFUSALS[number] for number in cases), UNKNOWN_CONTEXT]
    before = {events.what: (events.counted, events.reported) for events in classes}
    for options, message in cases.values():
        for _ in range(3):
            result = await agent.v3("snmpget", SYS_DESCR, options=options)
            assert message in result.stderr, (options, result.stderr)
    unauthenticated = await agent.v3("snmpget", SYS_DESCR, options=["-v3", "-l", "noAuthNoPriv", "-u", "nms"])
    assert "Unsupported security level" in unauthenticated.stderr
    context = await agent.v3("snmpget", "-n", "elsewhere", SYS_DESCR)  # the agent serves the context "" alone
    assert "Bad context specified" in context.stderr  # net-snmp's words for snmpUnknownContexts
    asked = [dotted(USM_STATS + (number, 0)) for number in cases]
    counters = await agent.v3("snmpget", *asked, dotted(UNKNOWN_CONTEXTS + (0,)))
    assert [vb.number for vb in varbinds(counters.stdout)] == [3, 3, 3, 4, 1]
    for events, times in zip(classes, (3, 3, 3, 4, 1)):  # each class said once a minute at most
        counted, reported = before[events.what]
        assert (events.counted - counted, events.reported - reported <= 1) == (times, True), events.what
    answered = await agent.v3("snmpget", SYS_DESCR)
    assert "BCPM gateway" in answered.stdout


async def test_an_inform_sent_to_the_agent_gets_a_report_and_the_agent_keeps_answering(snmp_agent) -> None:
    agent = await snmp_agent(1, users={"nms": NMS.settings()})
    inform = await agent.v3("snmpinform", "", dotted(COLD_START), timeout=1)
    assert inform.returncode != 0  # the agent receives no notifications: refused, never acknowledged
    handlers = await agent.v3("snmpget", dotted((1, 3, 6, 1, 6, 3, 11, 2, 1, 3, 0)), SYS_DESCR)
    [unknown_pdu_handlers, descr] = varbinds(handlers.stdout)
    assert unknown_pdu_handlers.number >= 1 and "BCPM gateway" in descr.value


class Relay(asyncio.DatagramProtocol):
    """A UDP relay on loopback between a manager and the agent; keeps what the manager sent."""

    def __init__(self, agent_port: int) -> None:
        self.agent = ("127.0.0.1", agent_port)
        self.sent: list[bytes] = []
        self._manager: tuple[str, int] | None = None
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def datagram_received(self, data: bytes, address: tuple[str, int]) -> None:
        assert self._transport is not None
        if address == self.agent:
            if self._manager is not None:
                self._transport.sendto(data, self._manager)
        else:
            self._manager = address
            self.sent.append(data)
            self._transport.sendto(data, self.agent)

    @property
    def port(self) -> int:
        assert self._transport is not None
        return self._transport.get_extra_info("sockname")[1]


@contextlib.asynccontextmanager
async def relay(agent_port: int) -> AsyncIterator[Relay]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: Relay(agent_port), local_addr=("127.0.0.1", 0)
    )
    try:
        yield protocol
    finally:
        transport.close()


async def exchange(datagram: bytes, port: int) -> bytes:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        await loop.sock_sendto(sock, datagram, ("127.0.0.1", port))
        return await asyncio.wait_for(loop.sock_recv(sock, 65535), 5)


@contextlib.asynccontextmanager
async def serving(config: Any, line: Any, folder: Path) -> AsyncIterator[Agent]:
    """A gateway for one life: started, and stopped when the block ends."""
    async with running(config) as gateway:
        await eventually(lambda: gateway.nodes.ready.is_set(), 20, "discovery")
        face = next(f for f in gateway.faces if isinstance(f, SnmpFace))
        await eventually(lambda: face.controller is not None and len(face.controller.index) > 100, what="SNMP tree")
        yield Agent(line, gateway, face, config.snmp.port, folder)


async def engine_of(agent: Agent) -> tuple[bytes, int, int]:
    """(snmpEngineID, snmpEngineBoots, snmpEngineTime) as a manager reads them."""
    result = await agent.v3("snmpget", "-Ox", *ENGINE_GROUP)
    identity, boots, seconds = varbinds(result.stdout)
    return bytes.fromhex(identity.value.replace(" ", "")), boots.number, seconds.number


def security_of(datagram: bytes) -> tuple[int, int, bytes]:
    """(msgFlags, msgAuthoritativeEngineBoots, msgAuthenticationParameters) of a v3 message, as
    pysnmp decodes it."""
    message, _ = decoder.decode(datagram, asn1Spec=SNMPv3Message())
    parameters, _ = decoder.decode(bytes(message[2]), asn1Spec=UsmSecurityParameters())
    return bytes(message[1][2])[0], int(parameters[1]), bytes(parameters[4])


def reported(datagram: bytes) -> tuple[int, ...]:
    """The counter a plaintext Report carries."""
    message, _ = decoder.decode(datagram, asn1Spec=SNMPv3Message())
    [varbind] = message[3].getComponent()[2].getComponent()[3]
    return tuple(varbind[0])


def signed(datagram: bytes, user: V3User, engine_id: bytes) -> bool:
    """The message's digest is the HMAC of the user's key localized for the engine (RFC 7860),
    computed here with pysnmp's key localization and the standard library's HMAC."""
    _, _, digest = security_of(datagram)
    protocol = {"sha256": pysnmp_config.USM_AUTH_HMAC192_SHA256}[user.auth]
    auth = pysnmp_config.AUTH_SERVICES[protocol]
    key = auth.localize_key(auth.hash_passphrase(rfc1902.OctetString(AUTH_PASSPHRASE)), rfc1902.OctetString(engine_id))
    at = datagram.index(digest)
    zeroed = datagram[:at] + bytes(len(digest)) + datagram[at + len(digest) :]
    return len(digest) == 24 and hmac.compare_digest(hmac.digest(bytes(key), zeroed, "sha256")[:24], digest)


async def test_boots_rise_at_every_start_so_a_cached_manager_carries_on_and_a_replay_is_refused(
    make_line, tmp_path: Path
) -> None:
    line = make_line(1)
    port = free_port(socket.SOCK_DGRAM)
    snmp = {"enabled": True, "address": "127.0.0.1", "port": port, "users": {"nms": NMS.settings()}}
    config = gateway_config(line, tmp_path, snmp=snmp)
    folder = tmp_path / "netsnmp"
    async with serving(config, line, folder) as agent:
        engine_id, boots, seconds = await engine_of(agent)
        async with relay(port) as recorder:
            target = f"udp:127.0.0.1:{recorder.port}"
            through = await run_async(folder, "snmpget", *NMS.options(), "-On", "-t", "2", "-r", "1", target, SYS_DESCR)
        assert "BCPM gateway" in through.stdout, through.stderr
        captured = recorder.sent[-1]  # the GET itself, at authPriv
        assert security_of(await exchange(captured, port))[0] == 0x03  # replayed within the window: answered
    async with serving(config, line, folder) as agent:
        assert (await engine_of(agent))[:2] == (engine_id, boots + 1)
        saved = StateStore(config.gateway.state_file).load().snmp_engine
        assert saved is not None and (saved.id, saved.boots) == (engine_id, boots + 1)
        # A manager that kept the engine's boots and time from before the restart: it takes the
        # Report of the new ones and asks again.
        cached = ["-e", f"0x{engine_id.hex()}", "-Z", f"{boots},{seconds}"]
        result = await agent.v3("snmpget", SYS_DESCR, options=NMS.options() + cached)
        assert "BCPM gateway" in result.stdout, result.stderr
        # The request captured before the restart, replayed: a Report signed with the user's key
        # at authNoPriv (RFC 3414 3.2.7a), carrying the new boots; nothing read.
        report = await exchange(captured, port)
        flags, report_boots, _ = security_of(report)
        assert (flags, report_boots, reported(report)) == (0x01, boots + 1, USM_STATS + (2, 0))
        assert signed(report, NMS, engine_id)


async def test_with_v2c_off_only_users_are_answered_and_v1_and_v2c_count_as_bad_versions(snmp_agent) -> None:
    agent = await snmp_agent(1, v2c=False, users={"nms": NMS.settings()})
    v2c = await agent.tool("snmpget", SYS_DESCR, timeout=0.5)
    v1 = await run_async(agent.folder, "snmpget", "-v1", "-c", READ, "-t", "0.5", "-r", "1", agent.target, SYS_DESCR)
    assert "Timeout" in v2c.stderr and "Timeout" in v1.stderr
    result = await agent.v3("snmpget", SYS_DESCR, dotted(SNMP_IN_BAD_VERSIONS))
    [descr, bad_versions] = varbinds(result.stdout)
    assert "BCPM gateway" in descr.value and bad_versions.number == 4  # each tool tried twice


async def test_the_shipped_snmp_section_with_a_user_serves_v3_and_warns_of_v2c(
    make_line, start_gateway, tmp_path
) -> None:
    shipped = tomllib.loads(SHIPPED.read_text())["snmp"]
    port = free_port(socket.SOCK_DGRAM)
    snmp = {**shipped, "address": "127.0.0.1", "port": port, "users": {"nms": NMS.settings()}}
    line = make_line(1)
    config = gateway_config(line, tmp_path, snmp=snmp)
    assert any(warning.startswith("snmp.v2c = true beside SNMPv3 users") for warning in config.warnings)
    gateway = await start_gateway(config)
    face = next(f for f in gateway.faces if isinstance(f, SnmpFace))
    agent = Agent(line, gateway, face, port, tmp_path / "netsnmp")
    await eventually(agent.all_values_present, 20, "every instance read once")
    walk = await agent.v3("snmpbulkwalk", dotted(BASE))  # net-snmp's default max-repetitions (10)
    assert walk.returncode == 0 and len(oids(walk)) == len(face.controller.index) - STANDARD_INSTANCES
    assert "BCPM gateway" in (await agent.tool("snmpget", SYS_DESCR)).stdout  # "public", as shipped
    assert face.engine is not None and face.engine.boots == 1  # the first start, an engine ID of its own


async def test_v3_traps_and_acknowledged_informs_reach_snmptrapd(snmp_agent, tmp_path) -> None:
    traps, informs = V3User("traps"), V3User("informs", "sha512", "aes256")
    receiver = TrapReceiver(tmp_path / "snmptrapd", users=(traps, informs))
    receiver.wait_listening()
    try:
        # net-snmp's own inform first: the receiver takes the user's informs
        sent = await run_async(
            tmp_path / "netsnmp",
            "snmpinform",
            *informs.options(),
            "-t",
            "2",
            "-r",
            "1",
            receiver.endpoint,
            "",
            "1.3.6.1.6.3.1.1.5.2",
        )
        assert sent.returncode == 0, sent.stderr
        agent = await snmp_agent(
            1,
            engine_id=f"0x{ENGINE_ID.hex()}",
            users={
                "traps": traps.settings(notify_hosts=[receiver.endpoint]),
                "informs": informs.settings(notify_hosts=[receiver.endpoint], notify_type="inform"),
            },
        )
        await eventually(lambda: len(cold_starts(receiver)) == 2, what="coldStart as a v3 trap and an inform")
        assert sorted(trap["security"].split(", ")[:3][::2] for trap in cold_starts(receiver)) == [
            ["INFORM", "user informs"],
            ["TRAP2", "user traps"],
        ]
        notifier = agent.face.notifier
        await eventually(lambda: notifier.counts.get("informs_acknowledged") == 1, what="the inform acknowledged")
        assert notifier.counts == {
            "traps_held_back": 0,
            "informs_sent": 1,
            "informs_acknowledged": 1,
            "informs_failed": 0,
            "informs_dropped": 0,
        }
    finally:
        receiver.stop()


def cold_starts(receiver: TrapReceiver) -> list[dict[str, str]]:
    return [
        trap
        for trap in receiver.traps()
        if trap.get(dotted((1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0))) == f"OID: {dotted(COLD_START)}"
    ]


async def test_an_inform_nobody_acknowledges_is_retried_a_bounded_number_of_times_and_counted(snmp_agent) -> None:
    nobody = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    users = {"nms": NMS.settings(notify_hosts=[nobody], notify_type="inform")}
    agent = await snmp_agent(1, users=users, inform_timeout=0.2, inform_retries=2)
    notifier = agent.face.notifier
    await eventually(lambda: notifier.counts.get("informs_failed") == 1, 10, what="the inform given up")
    [receiver] = notifier.informs
    assert (receiver.sent, receiver.pending, receiver.acknowledged) == (1, 0, 0)
    assert "BCPM gateway" in (await agent.v3("snmpget", SYS_DESCR)).stdout


async def test_snmp_user_keeps_only_keys_localized_for_the_engine_the_gateway_already_uses(
    make_line, tmp_path: Path
) -> None:
    line = make_line(1)
    port = free_port(socket.SOCK_DGRAM)
    path = config_file(line, tmp_path, snmp={"enabled": True, "address": "127.0.0.1", "port": port})
    config = load_config(path)
    async with serving(config, line, tmp_path / "netsnmp"):
        pass  # the first start made the engine ID and kept it in the state file
    first = StateStore(config.gateway.state_file).load().snmp_engine
    assert first is not None and first.boots == 1

    def snmp_user(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gateway", "snmp-user", "--config", str(path), *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)

    before = path.read_text()
    short = snmp_user("nms", stdin=f"{AUTH_PASSPHRASE}\nseven77\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr and path.read_text() == before
    written = snmp_user("nms", "--access", "read-write", stdin=f"{AUTH_PASSPHRASE}\n{PRIV_PASSPHRASE}\n")
    assert written.returncode == 0, written.stderr
    assert f"0x{first.id.hex()}" in written.stdout
    text = path.read_text()
    assert AUTH_PASSPHRASE not in text and PRIV_PASSPHRASE not in text
    config = load_config(path)
    [nms] = config.snmp.users
    assert config.snmp.engine_id == first.id and nms.localized and nms.access == "read-write"
    async with serving(config, line, tmp_path / "netsnmp") as agent:
        result = await agent.v3("snmpget", SYS_DESCR, *ENGINE_GROUP[:2])  # with the passphrases
        [descr, engine_id, boots] = varbinds(result.stdout)
        assert "BCPM gateway" in descr.value and boots.number == 2  # the same engine, started again
        written = await agent.v3("snmpset", instance(CT_SIZE_5, 2), "u", "200")  # through pysnmp's USM
        assert written.returncode == 0 and agent.line.panel(2).read(CT_SIZE_5.register, 1) == [200], written.stderr


def test_the_gateway_run_as_a_command_loads_the_ciphers_its_users_need(make_line, tmp_path: Path) -> None:
    """`run` keeps the `cryptography` package out unless a user has privacy (tests/test_cli.py)."""
    line = make_line(1)
    port = free_port(socket.SOCK_DGRAM)
    path = config_file(line, tmp_path, snmp={"enabled": True, "address": "127.0.0.1", "port": port})
    keys = "".join(f'{key} = "{value}"\n' for key, value in NMS.settings().items())
    path.write_text(path.read_text() + f"[snmp.users.nms]\n{keys}")
    command = [sys.executable, "-m", "gateway", "run", "--config", str(path)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        for logged in process.stderr:
            if "snmp agent serving" in logged:
                break
        target = f"udp:127.0.0.1:{port}"
        result = subprocess.run(
            [tool("snmpget"), *NMS.options(), "-On", "-t", "2", "-r", "1", target, SYS_DESCR],
            capture_output=True,
            text=True,
            env=environment(tmp_path / "netsnmp"),
            timeout=30,
        )
        assert "BCPM gateway" in result.stdout, result.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
