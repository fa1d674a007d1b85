"""Fuzz every face of a running gateway, then check it still answers, logged no crash, kept its memory.

The gateway runs as `bcpm-gateway demo` (simulated board on a pty, everything on loopback, every
face on a free port) in a process of its own, logging JSON to a file. Each face gets random bytes
and mutations of valid messages (bit flips, truncations, insertions, repeated or stretched
fields): BACnet/IP datagrams, SNMP messages, Modbus TCP frames, and on the web face HTTP/1.1
requests inside TLS (pages, the JSON API, /metrics, login and action form bodies, with a logged-in
session's cookie and form token), TLS records (a ClientHello) and plain HTTP. Afterwards a normal
request on every face must succeed, the log must hold no unhandled exception, and the
resident memory must be back within 10 % of what it was after a warm-up round of the same
traffic. Prints one JSON object.

    python bench/fuzz.py                 # 100,000 inputs per face
    python bench/fuzz.py --inputs 2000   # a quick round (the test suite runs one)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from common import free_port, resident_kib

SEED = 20261126


@dataclass(frozen=True, slots=True)
class Ports:
    bacnet: int
    snmp: int
    modbus_tcp: int
    web: int


# --- mutation -----------------------------------------------------------------------------------


def mutate(rng: random.Random, valid: bytes) -> bytes:
    """One malformed variant of a valid message."""
    data = bytearray(valid)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        position = rng.randrange(len(data)) if data else 0
        if choice == 0 and data:  # flip bits
            data[position] ^= 1 << rng.randrange(8)
        elif choice == 1 and data:  # a byte at an extreme
            data[position] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        elif choice == 2:  # truncate
            del data[rng.randrange(len(data) + 1) :]
        elif choice == 3:  # insert random bytes
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        elif choice == 4 and data:  # repeat a slice
            end = rng.randint(position, len(data))
            data[position:position] = data[position:end] * rng.randint(1, 20)
        else:  # overwrite a 16-bit field with an extreme length
            data[position : position + 2] = rng.choice((0, 1, 0x7FFF, 0xFFFF)).to_bytes(2, "big")
    return bytes(data)


def inputs(rng: random.Random, templates: list[bytes], count: int) -> Iterator[bytes]:
    """Random bytes one time in ten, mutations of the valid templates otherwise."""
    for _ in range(count):
        if rng.random() < 0.1:
            yield rng.randbytes(rng.randint(0, 600))
        else:
            yield mutate(rng, rng.choice(templates))


# --- the faces ----------------------------------------------------------------------------------


def modbus_templates() -> list[bytes]:
    def frame(unit: int, pdu: str) -> bytes:
        body = bytes([unit]) + bytes.fromhex(pdu)
        return b"\x00\x01\x00\x00" + len(body).to_bytes(2, "big") + body

    return [
        frame(1, "0305370002"),
        frame(2, "0400000005"),
        frame(1, "0600480064"),
        frame(1, "1000480001020064"),
        frame(2, "11"),
        frame(1, "2b0e0100"),
        frame(9, "0300000001"),
    ]


async def fuzz_modbus(port: int, count: int, rng: random.Random) -> int:
    """Each input on a connection of its own, read until the gateway is done with it (it answers
    and sees the end of input, or closes a malformed connection), 12 connections at a time (the
    gateway's default cap is 16)."""
    gate = asyncio.Semaphore(12)

    async def one(frame: bytes) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(frame)
                writer.write_eof()
                await asyncio.wait_for(reader.read(), 10)
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

    frames = list(inputs(rng, modbus_templates(), count))
    await asyncio.gather(*(one(frame) for frame in frames))
    return len(frames)


def bacnet_templates(network: int) -> list[bytes]:
    """Valid BACnet/IP datagrams: BVLL (4 bytes) + NPDU + APDU, including routed ones."""
    routed = "0124" + f"{network:04x}" + "0101ff"  # NPDU: DNET = the virtual network, DADR = node 1

    def bvll(function: str, body: str) -> bytes:
        return bytes.fromhex("81" + function + f"{len(body) // 2 + 4:04x}" + body)

    return [
        bvll("0b", "0120ffff00ff" + "1008"),  # global Who-Is
        bvll("0a", "0104" + "0005010c" + "0c0200c350" + "194d"),  # ReadProperty device 50000 object-name
        bvll("0a", routed + "0005020c" + "0c00000538" + "1955"),  # ReadProperty AI1336 present-value
        bvll("0a", routed + "0005030e" + "0c00000538" + "1e0955096f1f"),  # ReadPropertyMultiple
        bvll("0a", routed + "00050405" + "09011c000005382900393c"),  # SubscribeCOV
        bvll("0a", routed + "0005050f" + "0c00800001" + "1955" + "3e443f8000003f"),  # WriteProperty AV1
        bvll("0b", "018000"),  # Who-Is-Router-To-Network
        bvll("02", ""),
        bvll("06", ""),
        bvll("05", "003c"),  # Read-BDT, Read-FDT, Register-Foreign-Device
        bvll("04", "7f000001bac0" + "0120ffff00ff1008"),  # Forwarded-NPDU carrying a Who-Is
    ]


def snmp_templates() -> list[bytes]:
    """Valid SNMP v2c messages, encoded by pysnmp/pyasn1: GET, GETNEXT, GETBULK (a huge
    max-repetitions too), SET, with the read, write and a wrong community."""
    from pyasn1.codec.ber import encoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    enterprise = (1, 3, 6, 1, 4, 1, 3833, 1, 30)
    sys_descr = (1, 3, 6, 1, 2, 1, 1, 1, 0)

    def message(pdu: Any, community: str) -> bytes:
        msg = v2c.Message()
        v2c.apiMessage.set_defaults(msg)
        v2c.apiMessage.set_community(msg, community)
        v2c.apiMessage.set_pdu(msg, pdu)
        return encoder.encode(msg)

    def request(kind: Any, oid: tuple[int, ...], value: Any = None, repetitions: int | None = None) -> Any:
        pdu = kind()
        api_pdu = v2c.apiBulkPDU if repetitions is not None else v2c.apiPDU
        api_pdu.set_defaults(pdu)
        if repetitions is not None:
            api_pdu.set_max_repetitions(pdu, repetitions)
        api_pdu.set_varbinds(pdu, [(oid, v2c.Null("") if value is None else value)])
        return pdu

    templates = []
    for community in ("public", "private", "wrong"):
        templates += [
            message(request(v2c.GetRequestPDU, sys_descr), community),
            message(request(v2c.GetNextRequestPDU, enterprise), community),
            message(request(v2c.GetBulkRequestPDU, enterprise, repetitions=25), community),
            message(request(v2c.GetBulkRequestPDU, enterprise, repetitions=2_000_000), community),
            message(request(v2c.SetRequestPDU, enterprise + (1, 1, 6, 3, 4, 0), v2c.Gauge32(1)), community),
        ]
    return templates


WEB_AT_ONCE = 16  # connections at a time (the face's default cap is 32)
WEB_SILENCE = 0.5  # seconds without a byte that end an exchange (the face keeps connections alive)


def _tls_client() -> ssl.SSLContext:
    """A TLS client that takes the demo's self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_hello() -> bytes:
    """A real TLS client's first flight: one handshake record holding its ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with contextlib.suppress(ssl.SSLWantReadError):
        _tls_client().wrap_bio(incoming, outgoing).do_handshake()
    return outgoing.read()


def http_request(
    method: str, target: str, *, cookie: str = "", form: dict[str, str] | None = None, close: bool = True
) -> bytes:
    """An HTTP/1.1 request; a form goes as an application/x-www-form-urlencoded body."""
    body = urlencode(form).encode() if form is not None else b""
    head = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1"]
    if cookie:
        head.append(f"Cookie: {cookie}")
    if form is not None:
        head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
    if close:
        head.append("Connection: close")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass(frozen=True, slots=True)
class WebLogin:
    """A logged-in session: its cookie ("name=token") and the form token of its pages."""

    cookie: str
    csrf: str


async def web_login(port: int, timeout: float = 30.0) -> WebLogin:
    """Log in as the demo's admin (asked again while the face is still starting)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            answer = await _https(port, http_request("POST", "/login", form={"user": "admin", "password": "demo"}))
            if cookie := re.search(rb"set-cookie: (bcpm_session=[^;]+)", answer, re.IGNORECASE):
                page = await _https(port, http_request("GET", "/", cookie=cookie[1].decode()))
                if csrf := re.search(rb'name="csrf" value="([^"]+)"', page):
                    return WebLogin(cookie[1].decode(), csrf[1].decode())
        if time.monotonic() > deadline:
            raise RuntimeError("could not log in to the web face")
        await asyncio.sleep(0.5)


async def _https(port: int, request: bytes) -> bytes:
    """Send one request over TLS and read the answer until the face closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=_tls_client())
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


def web_templates(login: WebLogin) -> tuple[list[bytes], list[bytes]]:
    """Valid input for the web face: HTTP/1.1 requests sent inside TLS (pages, the API, /metrics,
    login and action form bodies, one chunked, two pipelined), and bytes that come before TLS (a
    ClientHello record, one followed by a stray application record, plain HTTP, an HTTP/2 preface)."""
    cookie, csrf = login.cookie, login.csrf
    chunked_body = urlencode({"csrf": csrf, "address": "2"}).encode()
    inside = [
        http_request("GET", "/", cookie=cookie),
        http_request("GET", "/nodes/1", cookie=cookie),
        http_request("GET", "/api/nodes/2?fields=all", cookie=cookie),
        http_request("GET", "/metrics"),
        http_request("GET", "/static/style.css"),
        http_request("GET", "/confirm/restart", cookie=cookie),
        http_request("POST", "/login", form={"user": "admin", "password": "demo"}),
        http_request("POST", "/login", form={"user": "admin", "password": "wrong"}),
        http_request("POST", "/actions/clear-alarms", cookie=cookie, form={"csrf": csrf, "address": "1"}),
        http_request("POST", "/actions/forget", cookie=cookie, form={"csrf": csrf, "address": "99"}),
        http_request("GET", "/events", cookie=cookie, close=False) + http_request("GET", "/config", cookie=cookie),
        (
            f"POST /actions/clear-alarms HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n"
            f"Connection: close\r\n\r\n{len(chunked_body):x}\r\n"
        ).encode()
        + chunked_body
        + b"\r\n0\r\n\r\n",
    ]
    hello = client_hello()
    before = [
        hello,
        hello + b"\x17\x03\x03\x00\x20" + bytes(32),
        http_request("GET", "/nodes"),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]
    return inside, before


async def fuzz_web(port: int, count: int, rng: random.Random) -> int:
    """Two thirds of the inputs inside TLS, a third as the first bytes of a connection; each on a
    connection of its own, read until the face closes it or WEB_SILENCE passes."""
    inside, before = web_templates(await web_login(port))
    tls_count = count * 2 // 3
    sends = [(True, data) for data in inputs(rng, inside, tls_count)]
    sends += [(False, data) for data in inputs(rng, before, count - tls_count)]
    rng.shuffle(sends)
    gate = asyncio.Semaphore(WEB_AT_ONCE)
    client = _tls_client()

    async def one(tls: bool, data: bytes) -> None:
        async with gate:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client if tls else None)
            except (OSError, ssl.SSLError, TimeoutError):
                return  # refused at the handshake: nothing to send
            try:
                writer.write(data)
                if not tls:
                    writer.write_eof()
                while await asyncio.wait_for(reader.read(65536), WEB_SILENCE):
                    pass
            except (OSError, ssl.SSLError, TimeoutError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(one(tls, data) for tls, data in sends))
    return len(sends)


def send_datagrams(port: int, messages: Iterator[bytes], pause_every: int = 100) -> int:
    """UDP datagrams to 127.0.0.1:port, paced a little so most reach the gateway instead of being
    dropped by a full socket buffer."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        for message in messages:
            with contextlib.suppress(OSError):
                sock.sendto(message[:65000], ("127.0.0.1", port))
                sent += 1
            if sent % pause_every == 0:
                time.sleep(0.005)
                with contextlib.suppress(OSError):
                    while sock.recv(65536):  # drop the answers
                        pass
    return sent


# --- the run ------------------------------------------------------------------------------------


@contextlib.contextmanager
def gateway(folder: Path, ports: Ports) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    config = folder / "demo.toml"
    config.write_text(
        "[serial]\nbaudrate = 115200\n"  # the simulated line too: pass-through requests go faster
        f'[bacnet]\naddress = "127.0.0.1/8"\nport = {ports.bacnet}\n'
        f"[snmp]\nport = {ports.snmp}\n"
        f"[modbus_tcp]\nport = {ports.modbus_tcp}\n"
        f"[web]\nport = {ports.web}\n"
        '[log]\nlevel = "info"\nformat = "json"\n'
    )
    log = folder / "gateway.log"
    with log.open("wb") as sink:
        # The log is stderr; stdout has only the demo's hints of what to try.
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=sink
        )
    try:
        deadline = time.monotonic() + 60
        while b'"nodes ready"' not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start:\n{log.read_text()}")
            time.sleep(0.1)
        time.sleep(1.0)  # the first poll cycle fills the cache
        yield process, log
    finally:
        process.terminate()
        process.wait(10)


def log_problems(log: Path) -> list[str]:
    """Log lines that report an unhandled exception or an error."""
    problems = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            problems.append(line)  # not our JSON: a traceback printed by something else
            continue
        if record.get("level") in ("error", "critical") or "exception" in record:
            problems.append(line)
    return problems


FaceFuzzer = Callable[[Ports, int, random.Random], int]


def fuzzers() -> dict[str, FaceFuzzer]:
    return {
        "bacnet": lambda ports, count, rng: send_datagrams(ports.bacnet, inputs(rng, bacnet_templates(50), count)),
        "snmp": lambda ports, count, rng: send_datagrams(ports.snmp, inputs(rng, snmp_templates(), count)),
        "modbus_tcp": lambda ports, count, rng: asyncio.run(fuzz_modbus(ports.modbus_tcp, count, rng)),
        "web": lambda ports, count, rng: asyncio.run(fuzz_web(ports.web, count, rng)),
    }


async def _modbus_answers(port: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(bytes.fromhex("000700000006010305370002"))  # FC03, 2 registers at 1336
    header = await asyncio.wait_for(reader.readexactly(7), 5)
    reply = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
    writer.close()
    return header[:2] == b"\x00\x07" and reply[:2] == b"\x03\x04"


def _udp_answer(port: int, request: bytes) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(2.0)
        for _ in range(5):
            sock.sendto(request, ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                return sock.recv(65536)
    return None


def answers(ports: Ports) -> dict[str, bool]:
    """A normal request to every face gets a normal answer."""
    bacnet = _udp_answer(ports.bacnet, bacnet_templates(50)[2])  # routed ReadProperty of AI1336
    snmp = _udp_answer(ports.snmp, snmp_templates()[0])  # GET sysDescr.0 with the read community
    return {
        "bacnet": bacnet is not None and _is_complex_ack(bacnet),
        "snmp": snmp is not None and _is_good_response(snmp),
        "modbus_tcp": asyncio.run(_modbus_answers(ports.modbus_tcp)),
        "web": asyncio.run(_web_answers(ports.web)),
    }


async def _web_answers(port: int) -> bool:
    """/metrics answers (a login may be refused a minute: the fuzz failed many)."""
    answer = await _https(port, http_request("GET", "/metrics"))
    return answer.startswith(b"HTTP/1.1 200 ") and b"bcpm_" in answer


def _is_complex_ack(datagram: bytes) -> bool:
    """BVLL, then an NPDU whose optional DNET/SNET fields are skipped, then APDU type 3."""
    control, offset = datagram[5], 6
    for present in (0x20, 0x08):  # destination, then source specifier
        if control & present:
            offset += 3 + datagram[offset + 2]
    offset += 1 if control & 0x20 else 0  # hop count
    return datagram[offset] >> 4 == 3


def _is_good_response(datagram: bytes) -> bool:
    from pyasn1.codec.ber import decoder
    from pysnmp.proto import api

    v2c = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
    message, _ = decoder.decode(datagram, asn1Spec=v2c.Message())
    pdu = v2c.apiMessage.get_pdu(message)
    return pdu.isSameTypeWith(v2c.ResponsePDU()) and int(v2c.apiPDU.get_error_status(pdu)) == 0


def run(count: int) -> dict[str, Any]:
    ports = Ports(free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port(), free_port())
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as folder, gateway(Path(folder), ports) as (process, log):
        warm_up = max(200, count // 20)
        for fuzz in fuzzers().values():  # let caches, buffers and lazy imports settle first
            fuzz(ports, warm_up, rng)
        memory_before = resident_kib(process.pid)
        sent = {}
        started = time.monotonic()
        for face, fuzz in fuzzers().items():
            sent[face] = fuzz(ports, count, rng)
        seconds = time.monotonic() - started
        time.sleep(1.0)
        alive = process.poll() is None
        healthy = answers(ports) if alive else {}
        memory_after = resident_kib(process.pid) if alive else None
        problems = log_problems(log)
    return {
        "benchmark": "fuzz",
        "inputs_per_face": sent,
        "seconds": round(seconds, 1),
        "gateway_alive": alive,
        "faces_answer_afterwards": healthy,
        "crashes": 0 if alive else 1,
        "errors_logged": len(problems),
        "first_errors": problems[:5],
        "memory_kib_before": memory_before,
        "memory_kib_after": memory_after,
        "memory_growth": round(memory_after / memory_before - 1, 3) if memory_after else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="malformed inputs per face")
    args = parser.parse_args()
    json.dump(run(args.inputs), sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
