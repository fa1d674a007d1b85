"""`[upstream]`: each key checked against the mode, errors naming key, value and what is allowed; the
shipped file with the port turned on serves a serial master, or, as the BACnet router's MS/TP
port, an MS/TP station (rusty-bacnet)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import rusty_bacnet as rb

from gateway.config import parse_config
from gateway.errors import ConfigError
from tests.bacnet.client import free_udp_port
from tests.bacnet.rusty_client import oid, prop
from tests.field.site import Site, mbpoll
from tests.support import config_file
from tests.upstream.serial_rig import SocatPair

COMMAND = [sys.executable, "-m", "gateway"]


def _problems(upstream: dict[str, object], **sections: dict[str, object]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config({"upstream": upstream, **sections})
    return [str(problem) for problem in caught.value.problems]


def test_the_upstream_port_is_off_by_default_with_the_documented_defaults() -> None:
    upstream = parse_config({}).upstream
    assert (upstream.mode, upstream.port, upstream.baudrate) == ("off", "/dev/ttyUSB1", 38400)
    assert (upstream.mac, upstream.max_master, upstream.max_info_frames, upstream.network) == (127, 127, 10, 51)
    assert (upstream.units, upstream.read_only, upstream.cache_max_age) == (None, False, 2.0)


@pytest.mark.parametrize(
    ("upstream", "sections", "expected"),
    [
        ({"mode": "bacnet"}, {}, 'upstream.mode = "bacnet": allowed "off", "mstp", "modbus_rtu"'),
        ({"mode": "mstp", "baudrate": 115200}, {}, "upstream.baudrate = 115200: allowed 9600, 19200, 38400, 76800 "),
        ({"mode": "modbus_rtu", "baudrate": 76800}, {}, "upstream.baudrate = 76800: allowed 9600, 19200, 38400, 57600"),
        ({"mode": "mstp", "parity": "E"}, {}, 'upstream.parity = "E": allowed "N" with mode = "mstp" (MS/TP is 8N1)'),
        ({"mode": "mstp", "mac": 128}, {}, "upstream.mac = 128: allowed an integer 0-127"),
        ({"mode": "mstp", "mac": 20, "max_master": 10}, {}, "upstream.max_master = 10: allowed 20-127"),
        ({"mode": "mstp", "network": 50}, {}, "upstream.network = 50: allowed a number other than bacnet.network"),
        ({"mode": "mstp", "network": 7}, {"bacnet": {"ip_network": 7}}, "other than bacnet.ip_network (7)"),
        ({"mode": "mstp"}, {"bacnet": {"enabled": False}}, 'allowed "off" or "modbus_rtu" with bacnet.enabled = false'),
        ({"mode": "modbus_rtu", "port": "/dev/ttyUSB0"}, {}, "allowed a port other than serial.port"),
        ({"mode": "modbus_rtu", "units": "0-3"}, {}, 'upstream.units = "0-3": allowed "" (the meters\' own'),
        ({"max_info_frames": 0}, {}, "upstream.max_info_frames = 0: allowed an integer 1-255"),
    ],
)
def test_a_bad_upstream_setting_names_the_key_the_value_and_what_is_allowed(
    upstream: dict[str, object], sections: dict[str, dict[str, object]], expected: str
) -> None:
    problems = _problems(upstream, **sections)
    assert any(expected in problem for problem in problems), problems


def test_modbus_rtu_units_are_address_ranges_and_mstp_keeps_its_numbers() -> None:
    assert parse_config({"upstream": {"mode": "modbus_rtu", "units": "1-3,7"}}).upstream.units == (1, 2, 3, 7)
    mstp = parse_config({"upstream": {"mode": "mstp", "mac": 3, "max_master": 20, "baudrate": 76800}})
    assert (mstp.upstream.mac, mstp.upstream.max_master, mstp.upstream.baudrate) == (3, 20, 76800)


def test_check_config_accepts_mstp_without_a_warning_but_for_a_missing_port(make_line, tmp_path: Path) -> None:
    line = make_line(1)
    path = config_file(
        line,
        tmp_path,
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": free_udp_port()},
        upstream={"mode": "mstp", "port": str(tmp_path / "ttyMSTP")},
    )
    checked = subprocess.run([*COMMAND, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert [line for line in checked.stdout.splitlines() if line.startswith("warning:")] == [
        f"warning: upstream.port = '{tmp_path / 'ttyMSTP'}' does not exist (yet): the gateway opens it when it appears"
    ]


@contextlib.contextmanager
def shipped_site(tmp_path: Path, mode: str) -> Iterator[tuple[Site, Path]]:
    """`bcpm-gateway run` from the shipped file with the upstream port on in `mode`, on one end of a
    socat pair; yields the site and the pair's other end, and checks the log stayed clean."""
    cable = SocatPair(tmp_path / "ttyUpstream", tmp_path / "ttyOther")
    cable.start()
    site = Site(tmp_path / "site", addresses=(1,), upstream={"mode": mode, "port": str(cable.a)})
    site.simulator.start()
    site.start()
    try:
        yield site, cable.b
        assert len(site.events("upstream port open")) == 1
    finally:
        site.stop()
        site.simulator.stop()
        cable.stop()
    assert site.errors() == []


async def test_the_shipped_file_with_the_mstp_port_on_serves_an_mstp_station(tmp_path: Path) -> None:
    with shipped_site(tmp_path, "mstp") as (site, station):
        # rusty-bacnet as an MS/TP master at the shipped rate (38400) and Max_Master (127)
        async with rb.BACnetClient(transport="mstp", serial_port=str(station), mstp_mac=1) as client:
            for _ in range(60):  # the shipped line: 19200 baud with wire time; discovery first
                found = {device.object_identifier.instance for device in await client.discover(timeout_ms=2000)}
                if found >= {50000, 50001, 50002}:
                    break
                assert site.alive(), site.log.read_text()[-4000:]
            assert found >= {50000, 50001, 50002}
            name = await client.read_property_from_device(50002, oid("device", 50002), prop("object-name"))
        assert name.value == "BCPM_2"


async def test_the_shipped_file_with_the_port_on_serves_a_serial_master(tmp_path: Path) -> None:
    with shipped_site(tmp_path, "modbus_rtu") as (site, master):
        command = [mbpoll(), "-m", "rtu", "-b", "38400", "-P", "none", "-1", "-o", "1", "-a", "1,2"]
        for _ in range(300):  # the shipped line: 19200 baud with wire time; discovery first
            result = await asyncio.to_thread(
                subprocess.run, [*command, "-r", "1336", str(master)], capture_output=True, text=True
            )
            if result.stdout.count("[1336]:") == 2:
                break
            assert site.alive(), site.log.read_text()[-4000:]
        assert result.stdout.count("[1336]:") == 2, result.stdout + result.stderr
