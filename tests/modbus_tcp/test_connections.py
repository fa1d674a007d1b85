"""Modbus TCP connections a site controls: who may connect, read-only, idle and stalled masters,
the connection cap, and refusals counted without a log line each."""

from __future__ import annotations

import asyncio
import socket

from pymodbus.client import AsyncModbusTcpClient

from gateway import app
from gateway.modbus import ILLEGAL_FUNCTION
from gateway.modbus_tcp.server import Closed
from gateway.sim import Faults
from tests.modbus_tcp.test_server import CT_SIZE_3, FLOAT_COPY, _gateway, _mbpoll
from tests.support import eventually


def _frame(tid: int, unit: int, pdu: bytes) -> bytes:
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tid: int, unit: int, pdu: bytes) -> bytes:
    writer.write(_frame(tid, unit, pdu))
    header = await asyncio.wait_for(reader.readexactly(7), 10)
    return await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)


async def _closed_by_the_gateway(reader: asyncio.StreamReader) -> bool:
    """The gateway closed the connection (a reset when it closed with our request unread)."""
    try:
        return await asyncio.wait_for(reader.read(), 10) == b""
    except ConnectionResetError:
        return True


READ_TWO = bytes.fromhex("0300000002")  # FC03, registers 1-2 (polled)


async def test_a_read_only_face_refuses_writes_and_other_functions_with_01(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, read_only=True)
    panel = line.panel(1)
    before = panel.read(CT_SIZE_3.register, 1)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    try:
        single = await client.write_register(CT_SIZE_3.register - 1, 50, device_id=1)
        multiple = await client.write_registers(CT_SIZE_3.register - 1, [50, 60], device_id=1)
        assert single.exception_code == multiple.exception_code == ILLEGAL_FUNCTION
        reply = await client.read_holding_registers(0, count=2, device_id=1)
        assert not reply.isError(), reply
    finally:
        client.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        # diagnostics (restart communications), mask write, read/write multiple, a vendor code
        for tid, pdu in enumerate(
            (
                bytes.fromhex("08000100 00"),
                bytes.fromhex("160002ffff0000"),
                bytes.fromhex("170000000100020001020001"),
                bytes.fromhex("41"),
            ),
            1,
        ):
            assert await _ask(reader, writer, tid, 1, pdu) == bytes([pdu[0] | 0x80, ILLEGAL_FUNCTION])
        report = await _ask(reader, writer, 9, 1, bytes([0x11]))  # Report Slave ID reads: it passes
        assert report[0] == 0x11
    finally:
        writer.close()
    await eventually(lambda: len(face.finished) == 2, what="both masters gone")
    # mbpoll, which this project did not write: its write is refused too
    result = await asyncio.to_thread(
        _mbpoll, "-a", "1", "-r", str(CT_SIZE_3.register - 1), "-p", str(port), "127.0.0.1", "50"
    )
    assert result.returncode != 0 and "Illegal function" in result.stderr + result.stdout
    assert panel.read(CT_SIZE_3.register, 1) == before
    raw = next(m for m in face.finished if m.requests == 5)
    assert (raw.refused_writes, raw.bus_trips) == (4, 1)  # only Report Slave ID went on the line
    assert face.counts["refused_writes"] == 7


async def test_a_host_outside_allow_is_disconnected_and_counted_once_in_the_log(
    make_line, start_gateway, tmp_path, capfd
) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, allow=["10.0.0.0/8", "192.0.2.7"])
    for _ in range(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_frame(1, 1, READ_TWO))
        assert await _closed_by_the_gateway(reader)
        writer.close()
    result = await asyncio.to_thread(_mbpoll, "-a", "1", "-r", "0", "-p", str(port), "127.0.0.1")
    assert result.returncode != 0
    assert face.closed[Closed.NOT_ALLOWED].dropped == 21 and not face.masters
    logged = capfd.readouterr()
    lines = (logged.out + logged.err).splitlines()
    assert sum("not in modbus_tcp.allow" in line for line in lines) == 1  # counted each time, logged once


async def test_a_host_inside_allow_is_served(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, allow=["127.0.0.0/8"])
    result = await asyncio.to_thread(_mbpoll, "-a", "1", "-r", "0", "-c", "2", "-p", str(port), "127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert face.closed[Closed.NOT_ALLOWED].dropped == 0


async def test_silent_and_stalled_masters_are_disconnected_and_busy_ones_are_not(
    make_line, start_gateway, tmp_path
) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, idle_timeout=1.0, frame_timeout=0.5)
    silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
    stalled_reader, stalled = await asyncio.open_connection("127.0.0.1", port)
    stalled.write(_frame(1, 1, READ_TWO)[:4])  # half a header, then nothing
    busy_reader, busy = await asyncio.open_connection("127.0.0.1", port)
    for tid in range(1, 9):  # a master asking every 0.4 s: never silent for 1 s
        assert not (await _ask(busy_reader, busy, tid, 1, READ_TWO))[0] & 0x80
        await asyncio.sleep(0.4)
    assert await _closed_by_the_gateway(silent_reader)
    assert await _closed_by_the_gateway(stalled_reader)
    assert not (await _ask(busy_reader, busy, 99, 1, READ_TWO))[0] & 0x80
    for writer in (silent, stalled, busy):
        writer.close()
    assert (face.closed[Closed.IDLE].dropped, face.closed[Closed.SLOW_FRAME].dropped) == (1, 1)


async def test_connections_have_tcp_keepalive_so_a_vanished_master_is_found(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, keepalive=9)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _ask(reader, writer, 1, 1, READ_TWO)
        (server_side,) = face._connections.values()
        sock = server_side.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 9
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 3
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    finally:
        writer.close()


async def test_at_the_cap_the_longest_idle_master_makes_room(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, max_connections=2)
    first_reader, first = await asyncio.open_connection("127.0.0.1", port)
    second_reader, second = await asyncio.open_connection("127.0.0.1", port)
    await eventually(lambda: len(face.masters) == 2, what="two masters connected")
    await _ask(first_reader, first, 1, 1, READ_TWO)  # the first spoke last: the second is idle the longest
    third_reader, third = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await _closed_by_the_gateway(second_reader)
        for tid, (reader, writer) in enumerate(((first_reader, first), (third_reader, third)), 2):
            assert not (await _ask(reader, writer, tid, 1, READ_TWO))[0] & 0x80
        assert face.closed[Closed.EVICTED].dropped == 1 and len(face.masters) == 2
    finally:
        for writer in (first, second, third):
            writer.close()


async def test_at_the_cap_a_master_waiting_for_its_answer_keeps_its_slot(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(
        make_line, start_gateway, tmp_path, max_connections=1, serial={"timeout": 2.0}
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _ask(reader, writer, 1, 1, READ_TWO)
        line.faults = Faults(slow=1.0, slow_delay=1.0)  # the next answer takes a second
        float_copy = bytes([0x04]) + FLOAT_COPY.to_bytes(2, "big") + (2).to_bytes(2, "big")
        writer.write(_frame(2, 1, float_copy))  # passed through to the line
        await eventually(lambda: any(m.answering for m in face.masters.values()), what="the request on the line")
        late_reader, late = await asyncio.open_connection("127.0.0.1", port)
        assert await _closed_by_the_gateway(late_reader)
        late.close()
        header = await asyncio.wait_for(reader.readexactly(7), 10)
        assert (await reader.readexactly(int.from_bytes(header[4:6], "big") - 1))[0] == 0x04
        assert face.closed[Closed.FULL].dropped == 1 and face.closed[Closed.EVICTED].dropped == 0
    finally:
        line.faults = Faults()
        writer.close()


async def test_the_status_line_shows_the_counts(make_line, start_gateway, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setattr(app, "STATUS_EVERY", 0.2)
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, allow=["10.0.0.0/8"])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await _closed_by_the_gateway(reader)
    writer.close()

    def status_with_the_refusal() -> bool:
        logged = capfd.readouterr()
        return any(
            "status" in row
            and "'modbus tcp connection refused (not in modbus_tcp.allow)': 1" in row
            and "'refused_writes': 0" in row
            for row in (logged.out + logged.err).splitlines()
        )

    reporting = asyncio.create_task(app._report_status(gateway))
    try:
        await eventually(status_with_the_refusal, what="a status line with the Modbus TCP counts")
    finally:
        reporting.cancel()
