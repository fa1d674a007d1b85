"""Modbus TCP face: several masters over real TCP sockets, the simulator behind the pty."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest
from pymodbus.client import AsyncModbusTcpClient

from gateway.modbus import GATEWAY_PATH_UNAVAILABLE, GATEWAY_TARGET_FAILED
from gateway.modbus_tcp import ModbusTcpFace
from gateway.pointmap import load
from gateway.sim import Faults
from tests.support import eventually, free_port, gateway_config

PM = load()
CURRENT_12 = PM.find("current", group="branch", channel=12)  # register 1347
CT_SIZE_3 = PM.find("ct_size", group="setup", channel=3)  # register 75
FLOAT_COPY = 2251  # 0-based: channel 1 current as a float, not polled, so a read of it goes through the bus


async def _gateway(
    make_line, start_gateway, tmp_path, *primaries: int, serial: dict[str, object] | None = None, **modbus: object
):
    line = make_line(*(primaries or (1,)))
    port = free_port()
    config = gateway_config(
        line,
        tmp_path,
        serial=serial or {},
        modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": port, "cache_max_age": 5.0, **modbus},
    )
    gateway = await start_gateway(config)
    face = next(f for f in gateway.faces if isinstance(f, ModbusTcpFace))
    await eventually(lambda: face.bound is not None, what="the server listening")
    return line, gateway, face, port


def _mbpoll(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("mbpoll") is None:
        pytest.fail("mbpoll is not installed (Debian package mbpoll; .ci/run installs it)")
    return subprocess.run(["mbpoll", "-m", "tcp", "-1", "-0", *args], capture_output=True, text=True, timeout=30)


async def test_mbpoll_reads_a_branch_current_equal_to_the_simulators(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path)
    line.panel(2).set_current(12, 17.5)
    node = gateway.nodes.nodes[2]
    await eventually(lambda: node.cache.reading(CURRENT_12).value == 17.5, what="current polled")
    # mbpoll: -a unit, -r first register (0-based with -0), -c count, -t 4 holding / -t 3 input registers
    for table in ("4", "3"):
        result = await asyncio.to_thread(
            _mbpoll, "-a", "2", "-r", str(CURRENT_12.register - 1), "-c", "1", "-t", table, "-p", str(port), "127.0.0.1"
        )
        assert result.returncode == 0, result.stderr
        assert f"[{CURRENT_12.register - 1}]: \t175" in result.stdout  # 17.5 A at scale -1


async def test_three_masters_at_once_get_correct_untangled_replies(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, 1)
    for channel in range(1, 43):
        line.panel(1).set_current(channel, channel / 10)
        line.panel(2).set_current(channel, channel / 5)
    currents = [PM.find("current", group="branch", channel=channel) for channel in range(1, 43)]
    expected = {1: [c / 10 for c in range(1, 43)], 2: [c / 5 for c in range(1, 43)]}
    await eventually(
        lambda: all([gateway.nodes.nodes[a].cache.reading(p).value for p in currents] == expected[a] for a in (1, 2)),
        what="currents polled",
    )

    async def master(unit: int, scale: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
        await client.connect()
        try:
            for round_ in range(20):
                channel = 1 + (round_ * 7 + unit) % 42
                reply = await client.read_holding_registers(1335 + channel - 1, count=1, device_id=unit)
                assert reply.registers == [channel * scale], (unit, channel)
                # and a read outside the polled set (the float copy), through the bus
                floats = await client.read_input_registers(2251 + 2 * (channel - 1), count=2, device_id=unit)
                value = client.convert_from_registers(floats.registers, client.DATATYPE.FLOAT32)
                assert value == pytest.approx(channel * scale / 10)
        finally:
            client.close()

    await asyncio.gather(master(1, 1), master(2, 2), master(1, 1))
    await eventually(lambda: len(face.finished) == 3, what="three masters disconnected")
    assert all(m.cache_hits == 20 and m.bus_trips == 20 and m.exceptions == 0 for m in face.finished)


async def test_a_write_of_a_ct_size_reaches_the_simulator_and_the_cache(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path)
    result = await asyncio.to_thread(
        _mbpoll, "-a", "1", "-r", str(CT_SIZE_3.register - 1), "-t", "4", "-p", str(port), "127.0.0.1", "250"
    )
    assert result.returncode == 0, result.stderr
    assert line.panel(1).read(CT_SIZE_3.register, 1) == [250]
    assert gateway.nodes.nodes[1].cache.reading(CT_SIZE_3).value == 250


async def test_meter_exceptions_and_a_vanished_node_come_back_as_modbus_exceptions(
    make_line, start_gateway, tmp_path
) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    try:
        refused = await client.write_register(CT_SIZE_3.register - 1, 40000, device_id=1)
        assert refused.isError() and refused.exception_code == 3  # the meter's own answer
        line.vanish(2)
        gone = await client.read_holding_registers(999, count=3, device_id=2)
        assert gone.isError() and gone.exception_code == 0x0B
        nobody = await client.read_holding_registers(0, count=1, device_id=9)
        assert nobody.isError() and nobody.exception_code == 0x0B
    finally:
        client.close()


async def test_garbage_closes_only_that_connection(make_line, start_gateway, tmp_path) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path)
    good = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await good.connect()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00\x01\x12\x34\x00\x06\x01\x03\x00\x00\x00\x01")  # protocol id 0x1234
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
        writer.close()
        reply = await good.read_holding_registers(0, count=5, device_id=1)
        assert not reply.isError() and len(reply.registers) == 5
    finally:
        good.close()


async def test_requests_that_cannot_reach_a_meter_are_answered_without_the_bus(
    make_line, start_gateway, tmp_path
) -> None:
    # scan only the board's own addresses: the rescan asks nobody else, so any silence counted is ours
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path, serial={"scan": "1-2"})
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    unserved, bad_frames = line.stats.unserved, line.stats.bad_frames
    requests = {
        "unit 9, where discovery found nothing": (9, bytes.fromhex("0300000001")),
        "a read whose count field is cut short": (1, bytes.fromhex("030000")),
    }
    replies = {}
    for tid, (what, (unit, pdu)) in enumerate(requests.items(), 1):
        writer.write(tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu)
        header = await reader.readexactly(7)
        replies[what] = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
    writer.close()
    assert replies == {
        "unit 9, where discovery found nothing": b"\x83\x0b",
        "a read whose count field is cut short": b"\x83\x03",
    }
    assert (line.stats.unserved, line.stats.bad_frames) == (unserved, bad_frames)  # neither went on the line


async def test_a_latched_alarm_is_cleared_by_a_modbus_write_and_by_the_global_reset(
    make_line, start_gateway, tmp_path
) -> None:
    line, gateway, face, port = await _gateway(make_line, start_gateway, tmp_path)
    panel = line.panel(1)
    panel.write(165, [0, 0, 0, 0, 0, 30])  # latch at once
    alarm_7, alarm_9 = (PM.find("alarm_status", group="alarms", channel=c) for c in (7, 9))
    node = gateway.nodes.nodes[1]
    for channel in (7, 9):
        panel.set_current(channel, 19.0)  # 95 % of the 20 A breaker: High-High and High latch
    await eventually(lambda: all(node.cache.reading(a).value == 0x0103 for a in (alarm_7, alarm_9)), what="latched")
    for channel in (7, 9):
        panel.set_current(channel, 10.0)
    await eventually(
        lambda: all(node.cache.reading(a).value == 0x0003 for a in (alarm_7, alarm_9)), what="only latched"
    )
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0)
    await client.connect()
    try:
        assert not (await client.write_register(alarm_7.register - 1, 0, device_id=1)).isError()
        assert panel.read(alarm_7.register, 1) == [0]
        assert node.cache.reading(alarm_7).value == 0  # read back at once: every face sees it now
        assert not (await client.write_register(295 - 1, 31010, device_id=1)).isError()  # reset all latching alarms
        assert panel.read(alarm_9.register, 1) == [0]
        await eventually(lambda: node.cache.reading(alarm_9).value == 0, what="the next poll shows the reset")
    finally:
        client.close()


async def test_pass_through_beyond_a_full_bus_queue_gets_gateway_path_unavailable(
    make_line, start_gateway, tmp_path
) -> None:
    masters = 24  # more than the queue holds (16, the least serial.max_queue allows) and the request on the wire
    line, _, face, port = await _gateway(
        make_line, start_gateway, tmp_path, serial={"max_queue": 16, "timeout": 2.0}, max_connections=masters
    )
    clients = [AsyncModbusTcpClient("127.0.0.1", port=port, timeout=30, retries=0) for _ in range(masters)]
    try:
        for client in clients:
            await client.connect()
        await eventually(lambda: len(face.masters) == masters, what="every master connected")
        # Every reply a second late, well within the 2 s timeout (the node stays online): the bus works
        # through its queue far slower than the masters fill it.
        line.faults = Faults(slow=1.0, slow_delay=1.0)
        reads = [
            asyncio.create_task(client.read_input_registers(FLOAT_COPY, count=2, device_id=1)) for client in clients
        ]
        await eventually(lambda: any(task.done() and task.result().isError() for task in reads), what="a refusal")
        line.faults = Faults()  # the queued requests now go through at line speed
        replies = await asyncio.gather(*reads)
        codes = [reply.exception_code if reply.isError() else None for reply in replies]
        assert set(codes) == {None, GATEWAY_PATH_UNAVAILABLE}  # the queued ones answered, the others refused
        assert all(len(reply.registers) == 2 for reply in replies if not reply.isError())
        assert sum(master.exceptions for master in face.masters.values()) == codes.count(GATEWAY_PATH_UNAVAILABLE)
        again = await clients[0].read_input_registers(FLOAT_COPY, count=2, device_id=1)
        assert not again.isError()  # refused only while the queue was full
    finally:
        for client in clients:
            client.close()


async def test_pass_through_to_a_closed_serial_port_gets_gateway_path_unavailable(
    make_line, start_gateway, tmp_path
) -> None:
    line = make_line(1)
    port = free_port()
    config = gateway_config(
        line, tmp_path, serial={"timeout": 2.0}, modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": port}
    )
    gateway = await start_gateway(config)
    face = next(f for f in gateway.faces if isinstance(f, ModbusTcpFace))
    await eventually(lambda: face.bound is not None, what="the server listening")
    clients = [AsyncModbusTcpClient("127.0.0.1", port=port, timeout=30, retries=0) for _ in range(4)]
    try:
        for client in clients:
            await client.connect()
        line.faults = Faults(slow=1.0, slow_delay=1.0)  # the requests wait, on the wire or queued
        reads = [
            asyncio.create_task(client.read_input_registers(FLOAT_COPY, count=2, device_id=1)) for client in clients
        ]
        await eventually(
            lambda: sum(m.bus_trips for m in face.masters.values()) == len(clients),
            what="every request passed to the bus",
        )
        line.stop()  # the RS-485 adapter unplugged
        caught = await asyncio.gather(*reads)
        assert [reply.exception_code for reply in caught] == [GATEWAY_PATH_UNAVAILABLE] * len(clients)
        # The gateway stays up, waiting for the port; its nodes are offline meanwhile.
        await eventually(lambda: not any(n.health.online for n in gateway.nodes.nodes.values()), what="nodes offline")
        later = await clients[0].read_input_registers(FLOAT_COPY, count=2, device_id=1)  # same connection
        assert later.isError() and later.exception_code == GATEWAY_TARGET_FAILED
    finally:
        for client in clients:
            client.close()
    result = await asyncio.to_thread(
        _mbpoll, "-a", "1", "-r", str(FLOAT_COPY), "-c", "2", "-t", "3", "-p", str(port), "127.0.0.1"
    )
    assert result.returncode != 0 and "Target device failed to respond" in result.stderr
    assert not gateway.thread.done
