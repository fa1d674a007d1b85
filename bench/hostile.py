"""Hostile traffic against a running gateway, one attack at a time, with legitimate clients on
every face asking before, during and after each.

The gateway (one simulated model-A board at 115200 baud, every face on loopback, the web face
too, BACnet as a BBMD so that the foreign-device attacks apply) runs in a process of its own, with
a task that measures how late its event loop wakes up. Each attack is bounded in time and count,
comes from 127.0.0.1 (and other 127.x addresses where it plays several hosts) in a process of its
own, and aims at 127.0.0.1 only. The legitimate clients are another host, 127.0.0.2: a routed
BACnet ReadProperty, an SNMP GET and a Modbus TCP FC03 on a new connection, each one at a time,
every PROBE_EVERY seconds, and an administrator's browser asking for the login page on a
kept-alive HTTPS connection every WEB_PROBE_EVERY seconds; PROBE_TIMEOUT to answer.

Per attack it prints: the share of legitimate requests served on each face before, during and
after the attack (and their latency during it), the event loop's worst lag during and after,
the gateway's resident memory before, at its peak and after, the bytes per second it logged
(JSON at level info), what the attack sent and what it got, and which targets it missed:
memory growth at most 10 MB, log at most 1 KB/s, loop lag at most 100 ms, and at least 95 % of
legitimate requests served on every face not under attack.

    python bench/hostile.py                       # every attack, 5 s each, about 4 minutes
    python bench/hostile.py --seconds 1 --quiet 1 # a short round (the test suite runs one)
    python bench/hostile.py --attack who_is_flood # one attack (repeat --attack for several)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import secrets
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

sys.path.insert(0, str(Path(__file__).parent.parent))
from common import cpu_seconds, free_port, resident_kib, simulator  # noqa: E402
from traffic import (  # noqa: E402
    OBJECT_NAME,
    PRESENT_VALUE,
    STATUS_FLAGS,
    SYS_DESCR,
    bvll,
    invoke_id_of,
    modbus_read,
    read_property,
    read_property_multiple,
    routed,
    snmp_message,
    snmp_request_id,
    unrouted,
)
from web_client import WebClient  # noqa: E402

from gateway.web.auth import hash_password  # noqa: E402

NETWORK = 50  # the gateway's virtual network (its default)
BAUDRATE = 115200
LEGITIMATE = "127.0.0.2"  # the legitimate clients' host; every attack comes from 127.0.0.1
PROBE_EVERY = 0.05
WEB_PROBE_EVERY = 0.25  # an administrator's page, four a second: within any address's request rate
PROBE_TIMEOUT = 1.0
QUIET = 2.0  # seconds of probing before and after each attack (by default)
LAG_TICK = 0.01
TARGETS = {
    "memory_growth_mb": 10.0,
    "log_bytes_per_s": 1024.0,
    "loop_lag_ms": 100.0,
    "share_elsewhere": 0.95,
    # The web attacks: an SNMP GET's p99 during a /metrics flood against before it, and what a
    # burst of logins leaves resident once it is over.
    "metrics_flood_snmp_p99_shift_ms": 20.0,
    "login_burst_memory_left_mb": 4.0,
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where the gateway listens, and its process (for /proc figures)."""

    bacnet: int
    snmp: int
    modbus_tcp: int
    web: int
    pid: int = 0


# --- the gateway, in a process of its own --------------------------------------------------------


def _serve(raw: dict[str, Any], log: str, beat: Any) -> None:
    """The gateway's process: every log line to `log`; its event loop writes the time to `beat`
    every LAG_TICK, so another process sees how late it is even while it is blocked."""
    from gateway.app import running
    from gateway.config import parse_config
    from gateway.logging import configure_logging

    with open(log, "ab", buffering=0) as sink:
        os.dup2(sink.fileno(), 2)
    configure_logging("info", "json")

    async def serve() -> None:
        async with running(parse_config(raw)) as gateway:
            await gateway.nodes.wait_ready()
            while True:
                beat.value = time.monotonic()
                await asyncio.sleep(LAG_TICK)

    asyncio.run(serve())


@contextlib.contextmanager
def gateway(folder: Path) -> Iterator[tuple[Target, Path, Any, Any]]:
    bacnet, snmp, modbus_tcp, web = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(), free_port()
    bdt = folder / "bdt.ini"
    bdt.write_text(f"127.0.0.1,{bacnet},255.255.255.255\n")
    log = folder / "gateway.log"
    with simulator(BAUDRATE, folder, 1) as serial_port:
        raw = {
            "gateway": {"operating_mode": "discovery", "state_file": str(folder / "state.json")},
            "serial": {"port": serial_port, "baudrate": BAUDRATE, "scan": "1-4", "probe_timeout": 0.02},
            "bacnet": {"address": "127.0.0.1/8", "port": bacnet, "bbmd": True, "bdt_file": str(bdt)},
            "snmp": {
                "address": "127.0.0.1",
                "port": snmp,
                "read_community": "public",
                "users": {SNMPV3_USER.decode(): {"auth_passphrase": "hostile-auth", "priv_passphrase": "hostile-priv"}},
            },
            "modbus_tcp": {"address": "127.0.0.1", "port": modbus_tcp},
            "web": {
                "enabled": True,
                "address": "127.0.0.1",
                "port": web,
                "password_hash": hash_password(secrets.token_urlsafe()),
            },
        }
        context = multiprocessing.get_context("spawn")
        beat = context.Value("d", 0.0)
        process = context.Process(target=_serve, args=(raw, str(log), beat), daemon=True)
        process.start()
        try:
            target = Target(bacnet, snmp, modbus_tcp, web, process.pid)
            _wait_until_served(target, process)
            yield target, log, beat, process
        finally:
            process.terminate()
            process.join(10)


def _wait_until_served(target: Target, process: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LEGITIMATE, 0))
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if not process.is_alive():
                raise RuntimeError("the gateway ended")
            sock.sendto(bvll(routed(NETWORK, 1, read_property(1, "analog-input", 1336))), ("127.0.0.1", target.bacnet))
            with contextlib.suppress(TimeoutError):
                if invoke_id_of(sock.recv(65536)) == (3, 1) and _listens(target.web):
                    time.sleep(1.0)  # a few poll cycles: every value known
                    return
    raise RuntimeError("the gateway did not answer BACnet, or listen for HTTPS, within a minute")


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True
    return False


# --- legitimate clients --------------------------------------------------------------------------


@dataclass
class Served:
    """The outcome of every legitimate request of one face, by phase: latency in s, or None."""

    phases: dict[str, list[float | None]] = field(default_factory=dict)

    def add(self, phase: str, latency: float | None) -> None:
        self.phases.setdefault(phase, []).append(latency)

    def summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for phase, outcomes in self.phases.items():
            answered = sorted(latency for latency in outcomes if latency is not None)
            result[phase] = round(len(answered) / len(outcomes), 3) if outcomes else None
            if phase == "during":
                result["asked_during"] = len(outcomes)
                if answered:
                    result["p50_ms"] = round(1000 * statistics.median(answered), 1)
            if phase != "after" and answered:
                p99 = round(1000 * answered[min(len(answered) - 1, int(0.99 * len(answered)))], 1)
                result["p99_ms" if phase == "during" else "p99_before_ms"] = p99
        return result


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)


async def _udp_probe(
    port: int,
    request: Callable[[int], bytes],
    answer: Callable[[bytes], int | None],
    record: Callable[[float | None], None],
) -> None:
    """One request at a time, each with a new ID; an answer counts if it carries that ID."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(_Datagrams, local_addr=(LEGITIMATE, 0))
    try:
        for number in range(1, 1 << 30):
            wanted = number % 256
            sent = loop.time()
            transport.sendto(request(wanted), ("127.0.0.1", port))
            latency = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PROBE_TIMEOUT):
                    while answer(await protocol.received.get()) != wanted:
                        pass
                    latency = loop.time() - sent
            record(latency)
            await asyncio.sleep(PROBE_EVERY)
    finally:
        transport.close()


async def _modbus_probe(port: int, record: Callable[[float | None], None]) -> None:
    """FC03 of two cached registers on a new connection each time, as a master that reconnects."""
    loop = asyncio.get_running_loop()
    for number in range(1, 1 << 30):
        sent = loop.time()
        latency = None
        writer = None
        with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
            async with asyncio.timeout(PROBE_TIMEOUT):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(LEGITIMATE, 0))
                writer.write(modbus_read(number, 1, 1336, 2))
                reply = await reader.readexactly(13)
                if reply[:2] == struct.pack(">H", number & 0xFFFF) and reply[7] == 3:
                    latency = loop.time() - sent
        if writer is not None:
            writer.close()
        record(latency)
        await asyncio.sleep(PROBE_EVERY)


async def _web_probe(port: int, record: Callable[[float | None], None]) -> None:
    """The login page on a kept-alive HTTPS connection, as an administrator's browser asks."""
    loop = asyncio.get_running_loop()
    client = WebClient(port, source=LEGITIMATE)
    try:
        while True:
            sent = loop.time()
            latency = None
            with contextlib.suppress(OSError, TimeoutError, h11.ProtocolError):
                async with asyncio.timeout(PROBE_TIMEOUT):
                    status, _ = await client.request("GET", "/login")
                    if status == 200:
                        latency = loop.time() - sent
            record(latency)
            await asyncio.sleep(WEB_PROBE_EVERY)
    finally:
        await client.close()


def _bacnet_answer(datagram: bytes) -> int | None:
    head = invoke_id_of(datagram)
    return head[1] if head is not None and head[0] == 3 else None


def _snmp_answer(datagram: bytes) -> int | None:
    request_id = snmp_request_id(datagram)
    return None if request_id is None else request_id % 256


# --- the attacks (each in a process of its own, bounded in time and count) ------------------------


def _udp(bind: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((bind, 0))
    sock.setblocking(False)
    return sock


def _flood(
    port: int,
    datagrams: Callable[[int], bytes],
    seconds: float,
    most: int,
    per_second: float | None = None,
    sockets: int = 1,
) -> dict[str, Any]:
    """Send up to `most` datagrams to 127.0.0.1:`port` for `seconds`, as fast as possible or at
    `per_second`, from `sockets` source ports in turn; what came back is counted and dropped."""
    socks = [_udp() for _ in range(sockets)]
    sent = received = received_bytes = sent_bytes = 0
    started = time.monotonic()
    try:
        while sent < most and (now := time.monotonic()) - started < seconds:
            if per_second is not None and sent >= (now - started) * per_second:
                time.sleep(min(0.005, 1 / per_second))
            data = datagrams(sent)
            with contextlib.suppress(BlockingIOError):
                socks[sent % sockets].sendto(data, ("127.0.0.1", port))
                sent_bytes += len(data)
            sent += 1
            if sent % 64 == 0:
                for sock in socks:
                    with contextlib.suppress(BlockingIOError):
                        while answer := sock.recv(65536):
                            received += 1
                            received_bytes += len(answer)
    finally:
        for sock in socks:
            sock.close()
    elapsed = time.monotonic() - started
    return {
        "sent": sent,
        "sent_per_s": round(sent / elapsed),
        "answers_seen": received,
        "bytes_out_to_in": round(received_bytes / sent_bytes, 1) if sent_bytes else None,
    }


def _ai_objects() -> list[tuple[str, int]]:
    from gateway.bacnet.objects import object_specs
    from gateway.pointmap import load

    return [("analog-input", spec.instance) for spec in object_specs(load(), "A") if spec.object_type == "analog-input"]


def who_is_flood(target: Target, seconds: float) -> dict[str, Any]:
    """Global Who-Is, 125,000 a second (or as many as one process can send)."""
    who_is = bvll(bytes.fromhex("0120ffff00ff1008"))
    return _flood(target.bacnet, lambda _: who_is, seconds, int(125_000 * seconds), per_second=125_000)


def time_sync_flood(target: Target, seconds: float) -> dict[str, Any]:
    """TimeSynchronization, 2,000 a second (each used to log a line)."""
    sync = bvll(unrouted(bytes.fromhex("1006a47e0c0203b40c000000"), expecting_reply=False))
    return _flood(target.bacnet, lambda _: sync, seconds, int(2000 * seconds), per_second=2000)


def segmented_request_without_end(target: Target, seconds: float) -> dict[str, Any]:
    """One segmented ReadPropertyMultiple whose segments never end (more-follows, ever higher
    sequence numbers, 1,400 bytes each), 2,000 segments a second."""
    body = read_property_multiple(0, _ai_objects()[:100], [PRESENT_VALUE])[4:1404]

    def segment(number: int) -> bytes:
        return bvll(unrouted(bytes([0x0E, 0x75, 7, number % 256, 16, 0x0E]) + body))

    return _flood(target.bacnet, segment, seconds, int(2000 * seconds), per_second=2000)


def big_unsegmented_rpm(target: Target, seconds: float) -> dict[str, Any]:
    """Three 63 KB ReadPropertyMultiple datagrams (far above the 1,476 bytes the gateway
    accepts), routed to a node, then silence (one in a round of less than 3 s)."""
    objects = _ai_objects()
    request = read_property_multiple(1, objects * 4, [PRESENT_VALUE, STATUS_FLAGS])[:62000]
    cut = request.rfind(b"\x1f") + 1  # whole object specifications only
    datagram = bvll(routed(NETWORK, 1, request[:cut]))
    result = _flood(target.bacnet, lambda _: datagram, seconds, max(1, min(3, int(seconds))))
    time.sleep(max(0.0, seconds - 0.1))
    return {**result, "datagram_bytes": len(datagram)}


def rpm_every_object(target: Target, seconds: float) -> dict[str, Any]:
    """A ReadPropertyMultiple of all 1,618 analog inputs of a node, once a second, alternating
    between the two nodes (each defeats the object cache)."""
    objects = _ai_objects()
    requests = [
        bvll(routed(NETWORK, node, read_property_multiple(node, objects, [PRESENT_VALUE, STATUS_FLAGS])))
        for node in (1, 2)
    ]
    result = _flood(target.bacnet, lambda n: requests[n % 2], seconds, max(1, int(seconds)), per_second=1)
    time.sleep(max(0.0, seconds - 1))
    return {**result, "datagram_bytes": len(requests[0])}


def unacknowledged_segmented_replies(target: Target, seconds: float) -> dict[str, Any]:
    """ReadPropertyMultiple of 200 objects' names, segmented response accepted, whose segments
    are never acknowledged, 20 a second."""
    objects = _ai_objects()[:200]
    requests = [
        bvll(routed(NETWORK, 1, read_property_multiple(n, objects, [OBJECT_NAME], segmented_response=True)))
        for n in range(256)
    ]
    return _flood(target.bacnet, lambda n: requests[n % 256], seconds, int(20 * seconds), per_second=20)


def cov_indefinite(target: Target, seconds: float) -> dict[str, Any]:
    """SubscribeCOV with lifetime 0 from 4 source ports, 300 each (1,200: above the gateway's
    1,024 cap), then a legitimate subscriber on another host tries, for 300 s and indefinitely."""
    objects = _ai_objects()

    def subscribe(number: int, process: int = 0, lifetime: int = 0) -> bytes:
        kind, instance = objects[number % len(objects)]
        body = (
            bytes([0x09, (number + process) % 256])
            + bytes([0x1C])
            + struct.pack(">I", instance)
            + b"\x29\x00\x3a"
            + struct.pack(">H", lifetime)
        )  # unconfirmed notifications
        return bvll(routed(NETWORK, 1, bytes([0x00, 0x05, number % 256, 0x05]) + body))

    result = _flood(target.bacnet, lambda n: subscribe(n), seconds, 1200, per_second=600, sockets=4)
    outcomes = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as legitimate:
        legitimate.bind((LEGITIMATE, 0))
        legitimate.settimeout(0.5)
        for number, lifetime in ((7, 300), (8, 0)):
            legitimate.sendto(subscribe(number, process=200, lifetime=lifetime), ("127.0.0.1", target.bacnet))
            outcome = "no answer"
            deadline = time.monotonic() + 3
            while outcome == "no answer" and time.monotonic() < deadline:
                with contextlib.suppress(TimeoutError):
                    kind, invoke_id = invoke_id_of(legitimate.recv(65536)) or (None, None)
                    if invoke_id == number and kind in (2, 5):  # not a notification of the first
                        outcome = "accepted" if kind == 2 else "refused (error)"
            outcomes[f"lifetime_{lifetime}"] = outcome
    return {**result, "legitimate_subscriber_afterwards": outcomes}


def foreign_device_churn(target: Target, seconds: float) -> dict[str, Any]:
    """Register-Foreign-Device with TTL 65535 from 80 ports (above the 64-entry table), deleting
    and registering again, and Delete-FDT-Entry of others' entries from a third host."""
    socks = [_udp() for _ in range(80)]
    stranger = _udp("127.0.0.3")
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds and sent < 40_000:
            for sock in socks:
                port = sock.getsockname()[1]
                with contextlib.suppress(BlockingIOError):
                    sock.sendto(bytes.fromhex("81050006ffff"), ("127.0.0.1", target.bacnet))
                    stranger.sendto(
                        bytes.fromhex("8108000a7f000001") + struct.pack(">H", port), ("127.0.0.1", target.bacnet)
                    )
                    if sent % 3 == 0:
                        sock.sendto(
                            bytes.fromhex("8108000a7f000001") + struct.pack(">H", port), ("127.0.0.1", target.bacnet)
                        )
                sent += 3
            time.sleep(0.01)
    finally:
        for sock in (*socks, stranger):
            sock.close()
    entries = _read_fdt(target)
    return {
        "sent": sent,
        "fdt_entries": None if entries is None else len(entries),
        "largest_ttl_granted": None if entries is None else max((e[2] for e in entries), default=0),
    }


def _read_fdt(target: Target) -> list[tuple[bytes, int, int, int]] | None:
    """The gateway's FDT as (IP, port, TTL, remaining), asked from the legitimate host."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as reader:
        reader.bind((LEGITIMATE, 0))
        reader.settimeout(1.0)
        for _ in range(5):
            reader.sendto(bytes.fromhex("81060004"), ("127.0.0.1", target.bacnet))  # Read-FDT
            with contextlib.suppress(TimeoutError):
                answer = reader.recv(65536)
                if answer[:2] == b"\x81\x07":
                    table = answer[4:]
                    return [struct.unpack(">4sHHH", table[at : at + 10]) for at in range(0, len(table), 10)]
    return None


def getbulk_flood(target: Target, seconds: float) -> dict[str, Any]:
    """GETBULK with max-repetitions 10,000, 100 a second."""
    requests = [
        snmp_message("getbulk", (1, 3, 6, 1, 4, 1, 3833, 1, 30), "public", n, repetitions=10_000) for n in range(256)
    ]
    return _flood(target.snmp, lambda n: requests[n % 256], seconds, int(100 * seconds), per_second=100)


SNMPV3_USER = b"nms"  # a user the gateway has; the attacker does not have its keys


def _snmpv3(engine_id: bytes, boots: int, seconds: int, user: bytes, flags: int, data: Any, message_id: int) -> bytes:
    """An SNMPv3 message with USM security parameters (a digest and salt of random bytes),
    encoded by pysnmp; ``data`` is a plaintext ScopedPDU or, at authPriv, the encrypted bytes."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    digest, salt = (os.urandom(24), os.urandom(8)) if flags & 1 else (b"", b"")
    parameters = UsmSecurityParameters()
    for position, value in enumerate((engine_id, boots, seconds, user, digest, salt)):
        parameters.setComponentByPosition(position, value)
    message = SNMPv3Message()
    message.setComponentByPosition(0, 3)
    header = message.setComponentByPosition(1).getComponentByPosition(1)
    for position, value in enumerate((message_id, 65507, bytes((flags,)), 3)):
        header.setComponentByPosition(position, value)
    message.setComponentByPosition(2, encoder.encode(parameters))
    message.setComponentByPosition(3).getComponentByPosition(3).setComponentByPosition(1 if flags & 2 else 0, data)
    return encoder.encode(message)


def _discover_engine(port: int) -> tuple[bytes, int, int]:
    """(engine ID, boots, time) from the Report to an empty request, as any manager learns them."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto.api import v2c
    from pysnmp.proto.mpmod.rfc3412 import ScopedPDU, SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    pdu = v2c.GetRequestPDU()
    v2c.apiPDU.set_defaults(pdu)
    scoped = ScopedPDU()
    scoped.setComponentByPosition(0, b"")
    scoped.setComponentByPosition(1, b"")
    scoped.setComponentByPosition(2).getComponentByPosition(2).setComponentByType(pdu.tagSet, pdu)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        sock.sendto(_snmpv3(b"", 0, 0, b"", 0x04, scoped, 1), ("127.0.0.1", port))
        report, _ = decoder.decode(sock.recv(65536), asn1Spec=SNMPv3Message())
    parameters, _ = decoder.decode(bytes(report[2]), asn1Spec=UsmSecurityParameters())
    return bytes(parameters[0]), int(parameters[1]), int(parameters[2])


def snmpv3_wrong_keys(target: Target, seconds: float) -> dict[str, Any]:
    """SNMPv3 GETs at authPriv as a user the gateway has, with wrong keys (its digest and
    ciphertext random), 20,000 a second, after a discovery as any manager makes: each one is
    checked, counted in usmStatsWrongDigests and answered with a Report."""
    engine_id, boots, seconds_now = _discover_engine(target.snmp)
    requests = [_snmpv3(engine_id, boots, seconds_now, SNMPV3_USER, 0x07, os.urandom(48), n) for n in range(256)]
    return _flood(target.snmp, lambda n: requests[n % 256], seconds, int(20_000 * seconds), per_second=20_000)


def _connect(port: int) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def modbus_idle_connections(target: Target, seconds: float) -> dict[str, Any]:
    """16 Modbus TCP connections held open (the default cap): 8 silent, 8 that sent 3 bytes of
    a header and nothing more."""
    held = [sock for sock in (_connect(target.modbus_tcp) for _ in range(16)) if sock is not None]
    for sock in held[8:]:
        with contextlib.suppress(OSError):  # refused: a legitimate master held a place meanwhile
            sock.send(b"\x00\x01\x00")
    time.sleep(seconds)
    closed_by_gateway = 0
    for sock in held:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, ConnectionError):
            if sock.recv(1) == b"":
                closed_by_gateway += 1
        sock.close()
    return {"connections_held": len(held), "closed_by_the_gateway": closed_by_gateway}


def modbus_bad_headers(target: Target, seconds: float) -> dict[str, Any]:
    """Connections that send a malformed MBAP header (protocol 0xFFFF), 200 a second."""
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds and sent < 200 * seconds:
        sock = _connect(target.modbus_tcp)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.send(bytes.fromhex("0001ffff0006010305370002"))
            sock.close()
        sent += 1
        time.sleep(0.005)
    return {"sent": sent}


def modbus_refused_connections(target: Target, seconds: float) -> dict[str, Any]:
    """The 16 connections of the cap held, then new connections as fast as they are refused."""
    held = [sock for sock in (_connect(target.modbus_tcp) for _ in range(16)) if sock is not None]
    tried = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds and tried < 2000 * seconds:
        sock = _connect(target.modbus_tcp)
        if sock is not None:
            sock.close()
        tried += 1
        time.sleep(0.001)
    for sock in held:
        sock.close()
    return {"connections_held": len(held), "connections_tried": tried}


def name_writes(target: Target, seconds: float) -> dict[str, Any]:
    """WriteProperty of a node device's Object_Name in a loop, each as soon as the last is
    answered; what the gateway wrote to disk meanwhile."""

    def write(number: int) -> bytes:
        name = f"PDU_{number % 2}".encode()
        value = bytes([0x75, len(name) + 1, 0x00]) + name  # CharacterString, UTF-8
        body = bytes([0x0C]) + struct.pack(">I", (8 << 22) | 50001) + bytes([0x19, OBJECT_NAME, 0x3E]) + value + b"\x3f"
        return bvll(routed(NETWORK, 1, bytes([0x00, 0x05, number % 256, 0x0F]) + body))

    written_before = _disk_writes(target.pid)
    answers: dict[int, int] = {}
    started = time.monotonic()
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(1.0)
        while time.monotonic() - started < seconds and sent < 5000 * seconds:
            sock.sendto(write(sent), ("127.0.0.1", target.bacnet))
            sent += 1
            with contextlib.suppress(TimeoutError):
                head = invoke_id_of(sock.recv(65536))
                kind = head[0] if head else -1
                answers[kind] = answers.get(kind, 0) + 1
    elapsed = time.monotonic() - started
    return {
        "sent": sent,
        "acknowledged": answers.get(2, 0),
        "refused": answers.get(5, 0),
        "disk_bytes_written_per_s": round((_disk_writes(target.pid) - written_before) / elapsed),
    }


def _disk_writes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def _run_async(attack: Callable[[], Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    return asyncio.run(attack())


def web_connection_hold(target: Target, seconds: float) -> dict[str, Any]:
    """32 plain-HTTP keep-alive connections from one address, each asking for the login page every
    2 s, and 32 silent TLS connections from another: every connection of the default cap."""

    async def hold() -> dict[str, Any]:
        plain = [WebClient(target.web, tls=False) for _ in range(32)]
        silent: list[asyncio.StreamWriter] = []
        for _ in range(32):
            with contextlib.suppress(OSError):
                silent.append((await asyncio.open_connection("127.0.0.1", target.web, local_addr=("127.0.0.3", 0)))[1])
        answered = failed = 0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for client in plain:
                try:
                    await client.request("GET", "/login")
                    answered += 1
                except (OSError, h11.ProtocolError):
                    failed += 1
            await asyncio.sleep(min(2.0, max(0.0, seconds - (time.monotonic() - started))))
        for client in plain:
            await client.close()
        for writer in silent:
            writer.close()
        return {
            "requests_answered": answered,
            "requests_failed": failed,
            "connections_made": sum(client.connections for client in plain) + len(silent),
        }

    return _run_async(hold)


def web_request_flood(target: Target, seconds: float) -> dict[str, Any]:
    """8 kept-alive HTTPS connections from one address (its share), each asking for the login page
    as soon as the last answer came."""

    async def flood() -> dict[str, Any]:
        statuses: dict[int, int] = {}
        started = time.monotonic()

        async def one() -> None:
            client = WebClient(target.web)
            while time.monotonic() - started < seconds and sum(statuses.values()) < 20_000:
                try:
                    status, _ = await client.request("GET", "/login")
                except (OSError, h11.ProtocolError):
                    status = 0
                statuses[status] = statuses.get(status, 0) + 1
            await client.close()

        await asyncio.gather(*(one() for _ in range(8)))
        return {"answers_by_status": dict(sorted(statuses.items()))}

    return _run_async(flood)


def web_login_burst(target: Target, seconds: float) -> dict[str, Any]:
    """30 wrong passwords at once from one address (each on a connection of its own), once a
    second; then single logins from fresh addresses, a wrong user against a wrong password."""

    async def burst() -> dict[str, Any]:
        statuses: dict[int, int] = {}

        async def guess(form: dict[str, str], source: str = "127.0.0.1") -> tuple[int, float]:
            client = WebClient(target.web, source=source)
            sent = time.monotonic()
            try:
                status, _ = await client.request("POST", "/login", form)
            except (OSError, h11.ProtocolError):
                status = 0  # refused: one address's share of connections
            finally:
                await client.close()
            return status, time.monotonic() - sent

        started = time.monotonic()
        while time.monotonic() - started < seconds:
            for status, _ in await asyncio.gather(*(guess({"user": "admin", "password": "guess"}) for _ in range(30))):
                statuses[status] = statuses.get(status, 0) + 1
            await asyncio.sleep(1.0)
        wrong_user, wrong_password = [], []
        for n in range(5):  # a fresh address each: the limiter counts per address
            wrong_user.append((await guess({"user": "root", "password": "guess"}, f"127.0.2.{n + 1}"))[1])
            wrong_password.append((await guess({"user": "admin", "password": "guess"}, f"127.0.3.{n + 1}"))[1])
        return {
            "answers_by_status": dict(sorted(statuses.items())),
            "wrong_user_ms": round(1000 * statistics.median(wrong_user), 1),
            "wrong_password_ms": round(1000 * statistics.median(wrong_password), 1),
        }

    return _run_async(burst)


def metrics_flood(target: Target, seconds: float) -> dict[str, Any]:
    """20 Prometheus scrapers from 10 addresses, each scraping again as soon as it has an answer,
    half of them taking gzip."""

    async def flood() -> dict[str, Any]:
        statuses: dict[int, int] = {}
        received = 0
        started = time.monotonic()

        async def scraper(number: int) -> None:
            nonlocal received
            client = WebClient(target.web, source=f"127.0.1.{number % 10 + 1}")
            headers = (("accept-encoding", "gzip"),) if number % 2 else ()
            while time.monotonic() - started < seconds:
                try:
                    status, body = await client.request("GET", "/metrics", headers=headers)
                    received += len(body)
                except (OSError, h11.ProtocolError):
                    status = 0
                statuses[status] = statuses.get(status, 0) + 1
            await client.close()

        await asyncio.gather(*(scraper(number) for number in range(20)))
        return {"answers_by_status": dict(sorted(statuses.items())), "bytes_received": received}

    return _run_async(flood)


# The attacks of the table, by the face each is aimed at.
_AIMED = {
    "bacnet": (
        segmented_request_without_end,
        big_unsegmented_rpm,
        rpm_every_object,
        time_sync_flood,
        unacknowledged_segmented_replies,
        who_is_flood,
        name_writes,
        foreign_device_churn,
        cov_indefinite,
    ),
    "snmp": (getbulk_flood, snmpv3_wrong_keys),
    "modbus_tcp": (modbus_idle_connections, modbus_refused_connections, modbus_bad_headers),
    "web": (web_connection_hold, web_request_flood, web_login_burst, metrics_flood),
}
ATTACKS: dict[str, tuple[str, Callable[[Target, float], dict[str, Any]]]] = {
    attack.__name__: (face, attack) for face, attacks in _AIMED.items() for attack in attacks
}


# --- the run -------------------------------------------------------------------------------------


async def _attack(
    name: str, target: Target, log: Path, beat: Any, seconds: float, quiet: float, pool: ProcessPoolExecutor
) -> dict[str, Any]:
    face, attack = ATTACKS[name]
    served = {each: Served() for each in ("bacnet", "snmp", "modbus_tcp", "web")}
    phase = "before"
    memory: list[int] = []

    worst_lag = 0.0

    async def sample() -> None:
        nonlocal worst_lag
        for tick in range(1 << 30):
            worst_lag = max(worst_lag, time.monotonic() - beat.value - LAG_TICK)
            if tick % 10 == 0:
                memory.append(resident_kib(target.pid))
            await asyncio.sleep(LAG_TICK)

    def record(each: str) -> Callable[[float | None], None]:
        return lambda latency: served[each].add(phase, latency)

    probes = [
        asyncio.create_task(
            _udp_probe(
                target.bacnet,
                lambda n: bvll(routed(NETWORK, 1, read_property(n, "analog-input", 1336))),
                _bacnet_answer,
                record("bacnet"),
            )
        ),
        asyncio.create_task(
            _udp_probe(target.snmp, lambda n: snmp_message("get", SYS_DESCR, "public", n), _snmp_answer, record("snmp"))
        ),
        asyncio.create_task(_modbus_probe(target.modbus_tcp, record("modbus_tcp"))),
        asyncio.create_task(_web_probe(target.web, record("web"))),
    ]
    try:
        recovered = await _settle(beat)
        await asyncio.sleep(quiet)
        phase = "during"
        memory_before = resident_kib(target.pid)
        log_before = log.stat().st_size
        sampler = asyncio.create_task(sample())
        started, cpu_before = time.monotonic(), cpu_seconds(target.pid)
        try:
            outcome = await asyncio.get_running_loop().run_in_executor(pool, attack, target, seconds)
        except Exception as error:  # the attack's own client failed: say so, go on with the next
            outcome = {"attack_failed": repr(error)}
        attacked = time.monotonic() - started
        cpu_share = (cpu_seconds(target.pid) - cpu_before) / attacked
        phase = "after"
        await asyncio.sleep(quiet)
        sampler.cancel()
        lag_ms = worst_lag * 1000
        logged = _read_from(log, log_before)
        log_rate = len(logged) / (attacked + quiet)
        memory_after = resident_kib(target.pid)
    finally:
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
    shares = {each: served[each].summary() for each in served}
    result = {
        "attack": name,
        "face": face,
        "attack_seconds": round(attacked, 1),
        **outcome,
        "served": shares,
        "loop_lag_max_ms": round(lag_ms, 1),
        "gateway_cpu_share_during": round(cpu_share, 2),  # of one core, every thread of the gateway
        "memory_mb": {
            "before": round(memory_before / 1024, 1),
            "peak": round(max(memory, default=0) / 1024, 1),
            "after": round(memory_after / 1024, 1),
        },
        "log_bytes_per_s": round(log_rate),
        "log_lines_by_event": _by_event(logged),
        "waited_for_the_gateway_before_s": recovered,
    }
    result["targets_missed"] = _missed(result)
    return result


async def _settle(beat: Any, timeout: float = 300.0) -> float:
    """Until the gateway's loop runs freely again (an earlier attack may still hold it); how
    long that took."""
    started = time.monotonic()
    while time.monotonic() - beat.value > 10 * LAG_TICK and time.monotonic() - started < timeout:
        await asyncio.sleep(0.1)
    return round(time.monotonic() - started, 1)


def _read_from(log: Path, offset: int) -> bytes:
    with log.open("rb") as file:
        file.seek(offset)
        return file.read()


def _by_event(logged: bytes) -> dict[str, int]:
    """How many lines of each event the gateway logged (a line that is not JSON counts as "?")."""
    counts: dict[str, int] = {}
    for line in logged.splitlines():
        try:
            event = str(json.loads(line).get("event"))
        except ValueError:
            event = "?"
        counts[event] = counts.get(event, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1])[:5])


def _missed(result: dict[str, Any]) -> list[str]:
    missed = []
    growth = result["memory_mb"]["peak"] - result["memory_mb"]["before"]
    # A password check takes scrypt's 16 MB while it runs (one at a time): what counts is after.
    if growth > TARGETS["memory_growth_mb"] and result["attack"] != "web_login_burst":
        missed.append(f"memory grew {growth:.1f} MB")
    if result["log_bytes_per_s"] > TARGETS["log_bytes_per_s"]:
        missed.append(f"log {result['log_bytes_per_s']} B/s")
    if result["loop_lag_max_ms"] > TARGETS["loop_lag_ms"]:
        missed.append(f"loop lag {result['loop_lag_max_ms']} ms")
    for face, shares in result["served"].items():
        # The web probe is another host: a web attack must leave it its share too.
        if (face != result["face"] or face == "web") and (shares.get("during") or 0) < TARGETS["share_elsewhere"]:
            missed.append(f"{face} served {shares.get('during')} during")
    snmp = result["served"]["snmp"]
    shift = (snmp.get("p99_ms") or 0) - (snmp.get("p99_before_ms") or 0)
    if result["attack"] == "metrics_flood" and shift > TARGETS["metrics_flood_snmp_p99_shift_ms"]:
        missed.append(f"snmp p99 {shift:+.1f} ms")
    left = result["memory_mb"]["after"] - result["memory_mb"]["before"]
    if result["attack"] == "web_login_burst" and left > TARGETS["login_burst_memory_left_mb"]:
        missed.append(f"{left:.1f} MB left after the logins")
    return missed


async def run(names: list[str], seconds: float, quiet: float = QUIET) -> dict[str, Any]:
    """Each attack against a gateway of its own, so that what one leaves behind (a full table,
    a backlog) does not count against the next."""
    results = []
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        for attack in names:
            print(f"hostile: {attack}", file=sys.stderr)
            with tempfile.TemporaryDirectory() as name, gateway(Path(name)) as (target, log, beat, process):
                result = await _attack(attack, target, log, beat, seconds, quiet, pool)
                result["gateway_alive_afterwards"] = process.is_alive()
                errors = [
                    line
                    for line in log.read_text(errors="replace").splitlines()
                    if '"level": "error"' in line or '"level": "critical"' in line or '"exception"' in line
                ]
                result["errors_logged"] = len(errors)
                if errors:
                    result["first_error"] = errors[0][:3000]
            results.append(result)
    return {
        "benchmark": "hostile",
        "seconds_per_attack": seconds,
        "quiet_s": quiet,
        "probe_every_s": PROBE_EVERY,
        "probe_timeout_s": PROBE_TIMEOUT,
        "targets": TARGETS,
        "attacks": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each attack")
    parser.add_argument("--quiet", type=float, default=QUIET, help="seconds of probing before and after each")
    parser.add_argument("--attack", action="append", choices=sorted(ATTACKS), help="attacks to run (default all)")
    args = parser.parse_args()
    json.dump(asyncio.run(run(args.attack or list(ATTACKS), args.seconds, args.quiet)), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
