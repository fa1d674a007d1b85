"""The upstream port as a Modbus RTU slave: serial masters (mbpoll, pymodbus's serial client) on a pty
pair read and write the meters as Modbus TCP masters do, and what a hostile or unlucky line does
to it (bad CRCs, truncated frames, frames for other units, a master that gives up, the port
unplugged) is dropped and counted, never answered wrongly."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
import structlog
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU

from gateway.modbus import GATEWAY_TARGET_FAILED, ILLEGAL_FUNCTION
from gateway.pointmap import load
from gateway.sim import Faults
from gateway.sim.multidrop import MultidropLine
from gateway.upstream import UpstreamFace
from tests.support import eventually, free_port, gateway_config
from tests.upstream.serial_rig import RawEnd, SocatPair

PM = load()
CURRENT_12 = PM.find("current", group="branch", channel=12)  # register 1347
CT_SIZE_3 = PM.find("ct_size", group="setup", channel=3)  # register 75
FLOAT_COPY = 2251  # 0-based: channel 1 current as a float, not polled, so a read of it goes to the meter
BAUD = 38400
FRAMER = FramerRTU(DecodePDU(is_server=False))


def _mbpoll(link: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("mbpoll") is None:
        pytest.fail("mbpoll is not installed (Debian package mbpoll; .ci/install-tools installs it)")
    command = ["mbpoll", "-m", "rtu", "-b", str(BAUD), "-P", "none", "-o", "1", "-1", "-0", *args, str(link)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


@pytest.fixture
def pair(tmp_path: Path):
    cable = SocatPair(tmp_path / "ttyGateway", tmp_path / "ttyMaster")
    cable.start()
    yield cable
    cable.stop()


async def _gateway(
    make_line, start_gateway, tmp_path: Path, port: Path, serial: dict[str, object] | None = None, **upstream: object
):
    line = make_line(1)
    config = gateway_config(
        line,
        tmp_path,
        serial=serial or {},
        upstream={"mode": "modbus_rtu", "port": str(port), "baudrate": BAUD, **upstream},
    )
    gateway = await start_gateway(config)
    face = next(f for f in gateway.faces if isinstance(f, UpstreamFace))
    await eventually(lambda: face.port_open, what="the upstream port open")
    return line, gateway, face


async def test_mbpoll_over_rtu_reads_what_modbus_tcp_serves(make_line, start_gateway, tmp_path, pair) -> None:
    line = make_line(1)
    tcp = free_port()
    config = gateway_config(
        line,
        tmp_path,
        modbus_tcp={"enabled": True, "address": "127.0.0.1", "port": tcp},
        upstream={"mode": "modbus_rtu", "port": str(pair.a), "baudrate": BAUD},
    )
    gateway = await start_gateway(config)
    line.panel(2).set_current(12, 17.5)
    await eventually(lambda: gateway.nodes.nodes[2].cache.reading(CURRENT_12).value == 17.5, what="current polled")
    reference = str(CURRENT_12.register - 1)
    for table in ("4", "3"):
        over_rtu = await asyncio.to_thread(_mbpoll, pair.b, "-a", "2", "-r", reference, "-c", "4", "-t", table)
        assert over_rtu.returncode == 0, over_rtu.stderr
        assert f"[{CURRENT_12.register - 1}]: \t175" in over_rtu.stdout  # 17.5 A at scale -1
        command = ["mbpoll", "-m", "tcp", "-p", str(tcp), "-1", "-0", "-a", "2", "-r", reference, "-c", "4"]
        over_tcp = await asyncio.to_thread(subprocess.run, [*command, "-t", table, "127.0.0.1"], capture_output=True)
        values = [line for line in over_rtu.stdout.splitlines() if line.startswith("[")]
        assert values == [line for line in over_tcp.stdout.decode().splitlines() if line.startswith("[")]


async def test_pymodbus_serial_client_writes_through_to_the_meter_and_reads_meter_exceptions(
    make_line, start_gateway, tmp_path, pair
) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a)
    client = AsyncModbusSerialClient(str(pair.b), baudrate=BAUD, timeout=2, retries=0)
    await client.connect()
    try:
        written = await client.write_register(CT_SIZE_3.register - 1, 250, device_id=1)
        assert not written.isError()
        assert line.panel(1).read(CT_SIZE_3.register, 1) == [250]
        assert gateway.nodes.nodes[1].cache.reading(CT_SIZE_3).value == 250  # read back for every face
        floats = await client.read_input_registers(FLOAT_COPY, count=2, device_id=1)  # not polled: from the meter
        assert not floats.isError() and len(floats.registers) == 2
        refused = await client.write_register(CT_SIZE_3.register - 1, 40000, device_id=1)
        assert refused.isError() and refused.exception_code == 3  # the meter's own answer
    finally:
        client.close()
    # Counted on the face's own thread once the reply is sent: the client may read it first.
    await eventually(lambda: face.slave_counts.replies == 3, what="the three replies counted")
    assert face.slave_counts.bus_trips == 3


async def test_an_offline_meter_gets_exception_0b_at_once(make_line, start_gateway, tmp_path, pair) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a)
    line.vanish(2)
    await eventually(lambda: not gateway.nodes.nodes[2].health.online, what="node 2 offline")
    result = await asyncio.to_thread(_mbpoll, pair.b, "-a", "2", "-r", "0", "-c", "3")
    assert result.returncode != 0 and "Target device failed to respond" in result.stdout + result.stderr
    client = AsyncModbusSerialClient(str(pair.b), baudrate=BAUD, timeout=2, retries=0)
    await client.connect()
    try:
        gone = await client.read_holding_registers(999, count=3, device_id=2)
        assert gone.isError() and gone.exception_code == GATEWAY_TARGET_FAILED
    finally:
        client.close()


async def test_bad_crc_truncated_frames_garbage_and_other_units_get_no_answer(
    make_line, start_gateway, tmp_path, pair
) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a)
    master = RawEnd(pair.b)
    try:
        good = FRAMER.encode(bytes.fromhex("0300000005"), 1, 0)
        for frame in (
            good[:-1] + bytes([good[-1] ^ 0xFF]),  # a CRC error
            good[:5],  # truncated: the silence ends it
            bytes(range(40)),  # garbage
            FRAMER.encode(bytes.fromhex("0300000005"), 9, 0),  # a unit no meter has: another slave's
        ):
            master.write(frame)
            assert await asyncio.to_thread(master.read) == b""
        master.write(good)
        reply = await asyncio.to_thread(master.read)
        used, unit, _, pdu = FramerRTU(DecodePDU(is_server=False)).decode(reply)
        assert (used, unit, pdu[:2]) == (len(reply), 1, b"\x03\x0a")  # five registers: the line is still good
    finally:
        master.close()
    counts = face.slave_counts
    assert (counts.bad_frames, counts.other_units, counts.replies) == (3, 1, 1)


async def test_a_broadcast_write_reaches_every_meter_unanswered(make_line, start_gateway, tmp_path, pair) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a)
    master = RawEnd(pair.b)
    try:
        master.write(
            FRAMER.encode(bytes([0x06]) + (CT_SIZE_3.register - 1).to_bytes(2, "big") + (150).to_bytes(2), 0, 0)
        )
        assert await asyncio.to_thread(master.read, 1.0) == b""  # nobody answers a broadcast
    finally:
        master.close()
    assert line.panel(1).read(CT_SIZE_3.register, 1) == [150]
    assert line.panel(2).read(CT_SIZE_3.register, 1) == [150]
    assert face.slave_counts.broadcasts == 1 and face.slave_counts.replies == 0


async def test_read_only_lets_reads_pass_and_refuses_writes_with_exception_01(
    make_line, start_gateway, tmp_path, pair
) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a, read_only=True)
    client = AsyncModbusSerialClient(str(pair.b), baudrate=BAUD, timeout=2, retries=0)
    await client.connect()
    try:
        refused = await client.write_register(CT_SIZE_3.register - 1, 250, device_id=1)
        assert refused.isError() and refused.exception_code == ILLEGAL_FUNCTION
        read = await client.read_holding_registers(CT_SIZE_3.register - 1, count=1, device_id=1)
        assert not read.isError()
    finally:
        client.close()
    assert line.panel(1).read(CT_SIZE_3.register, 1) != [250]
    assert face.slave_counts.refused_writes == 1 and face.counts["refused_writes"] == 1


async def test_configured_units_answer_0b_where_no_meter_is_and_others_stay_silent(
    make_line, start_gateway, tmp_path, pair
) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a, units="1,3")
    client = AsyncModbusSerialClient(str(pair.b), baudrate=BAUD, timeout=1, retries=0)
    await client.connect()
    try:
        assert not (await client.read_holding_registers(0, count=1, device_id=1)).isError()
        missing = await client.read_holding_registers(0, count=1, device_id=3)
        assert missing.isError() and missing.exception_code == GATEWAY_TARGET_FAILED
    finally:
        client.close()
    silent = await asyncio.to_thread(_mbpoll, pair.b, "-a", "2", "-r", "0")  # a meter, but not a unit answered
    assert silent.returncode != 0 and "timed out" in silent.stdout + silent.stderr
    assert face.slave_counts.other_units == 1


async def test_a_master_that_gave_up_gets_no_late_answer_to_its_old_request(
    make_line, start_gateway, tmp_path, pair
) -> None:
    line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a, serial={"timeout": 2.0})
    line.faults = Faults(slow=1.0, slow_delay=0.5)  # every meter reply half a second late
    master = RawEnd(pair.b)
    try:
        master.write(FRAMER.encode(bytes.fromhex("04") + FLOAT_COPY.to_bytes(2, "big") + b"\x00\x02", 1, 0))
        await asyncio.sleep(0.1)  # the master gives up and asks for something else
        master.write(FRAMER.encode(bytes.fromhex("0300000001"), 1, 0))
        replies = await asyncio.to_thread(master.read, 3.0, 10.0)
    finally:
        master.close()
    used, unit, _, pdu = FramerRTU(DecodePDU(is_server=False)).decode(replies)
    assert used == len(replies) and pdu[:2] == b"\x03\x02"  # only the answer to the second request
    assert face.slave_counts.superseded == 1


async def test_a_transceiver_that_hears_itself_with_echo_on(make_line, start_gateway, tmp_path) -> None:
    gateway_end, master_end = tmp_path / "ttyGateway", tmp_path / "ttyMaster"
    with MultidropLine([str(gateway_end), str(master_end)], echo={0}):
        line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, gateway_end, echo=True)
        for _ in range(3):
            result = await asyncio.to_thread(_mbpoll, master_end, "-a", "1", "-r", "0", "-c", "5")
            assert result.returncode == 0, result.stdout + result.stderr
    assert face.slave_counts.bad_frames == 0 and face.slave_counts.replies == 3


async def test_the_port_unplugged_is_logged_once_and_served_again_when_it_returns(
    make_line, start_gateway, tmp_path, pair
) -> None:
    with structlog.testing.capture_logs() as logs:
        line, gateway, face = await _gateway(make_line, start_gateway, tmp_path, pair.a)
        pair.stop()  # the USB adapter pulled out
        await eventually(lambda: not face.port_open, what="the port lost")
        await asyncio.sleep(3.5)  # several attempts to open it again (1 s, 2 s...)
        pair.start()
        await eventually(lambda: face.port_open, 40, what="the port open again")
        result = await asyncio.to_thread(_mbpoll, pair.b, "-a", "1", "-r", "0", "-c", "5")
    assert result.returncode == 0, result.stdout + result.stderr
    events = [entry["event"] for entry in logs]
    assert events.count("upstream port lost") == 1
    assert events.count("upstream port unavailable") == 0  # the failed attempts are not logged one by one
    assert events.count("upstream port open") == 2
    assert not gateway.thread.done
