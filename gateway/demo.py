"""`bcpm-gateway demo`: the simulator and the gateway in one process, on loopback.

The demo's own defaults (loopback addresses, unprivileged ports, state in a temporary folder) lie
under the user's file, if any; the simulated boards draw a load profile (`gateway.sim.load`), so
values move and one channel goes over its high-current threshold and back every few minutes.
Before serving, the demo prints what to try on each face it serves.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import structlog

from gateway.app import serve
from gateway.bacnet.objects import av_instances
from gateway.config import Config, load_config, merge_config, parse_config, read_toml
from gateway.config_file import configuration_text
from gateway.cpu import CpuBudget
from gateway.files import write_atomically
from gateway.logging import configure_logging
from gateway.pointmap import load as load_pointmap
from gateway.sim import Board, SimulatedLine
from gateway.sim.load import SWING_EVERY, SWING_HOLD, SWING_START, Load
from gateway.snmp.placement import default_layout

log = structlog.get_logger(__name__)

DEMO_TURNAROUND = 0.005
#: The demo's web login is admin / demo (loopback only): the scrypt hash of "demo".
DEMO_PASSWORD_HASH = "scrypt$16384$8$1$aKU2YwJ5TjfIekMZUowA0w==$GpezRD/J6MevoxZgz1l590gw7aOJxkYFlbxJS4c3GMA="


def demo_defaults(boards: int, state_dir: Path) -> dict[str, Any]:
    """The demo's configuration: loopback only, unprivileged ports, state in a temporary folder."""
    return {
        "gateway": {"operating_mode": "discovery", "state_file": str(state_dir / "state.json")},
        # The boards answer from a thread of this process, which the faces' start-up on the same
        # interpreter can hold off for tens of milliseconds: more than a site's 15 ms allowance.
        "serial": {"baudrate": 19200, "scan": f"1-{max(16, 2 * boards)}", "probe_timeout": 0.1},
        "bacnet": {"address": "127.0.0.1/8", "port": 47808},
        "snmp": {"address": "127.0.0.1", "port": 1161, "read_community": "public", "write_community": "private"},
        "modbus_tcp": {"address": "127.0.0.1", "port": 1502},
        "web": {"enabled": True, "address": "127.0.0.1", "port": 8443, "password_hash": DEMO_PASSWORD_HASH},
    }


def demo_config(boards: int, state_dir: Path, user_file: Path | None) -> Config:
    """The demo's defaults with the user's file laid over them (the serial port is set later).

    The demo's login (admin / demo) holds on loopback only: a file that moves the web face to
    another address without a password hash of its own leaves it with none (nobody logs in).
    """
    raw = demo_defaults(boards, state_dir)
    if user_file is not None:
        raw = merge_config(raw, read_toml(user_file))
    config = parse_config(raw)
    web = config.web
    if web.password_hash == DEMO_PASSWORD_HASH and not IPv4Address(web.address).is_loopback:
        config = replace(config, web=replace(web, password_hash=None))
    return config


async def run_demo(boards: int, user_file: Path | None, load: Load | None, budget: CpuBudget | None = None) -> None:
    """Run the simulator and the gateway together until SIGTERM or SIGINT (`budget`: see `gateway.cpu`)."""
    with tempfile.TemporaryDirectory(prefix="bcpm-demo-") as state_dir:
        config = demo_config(boards, Path(state_dir), user_file)
        configure_logging(config.log.level, config.log.format)
        serial = config.serial
        # The simulated line runs at the configured line settings (19200 8N1 for "auto", which the
        # gateway then finds); the gateway's port is its pty.
        baudrate, parity = (serial.baudrate, serial.parity) if isinstance(serial.baudrate, int) else (19200, "N")
        simulated = [Board(1 + 2 * i, baudrate=baudrate, load=load) for i in range(boards)]
        with SimulatedLine(
            simulated, baudrate=baudrate, parity=parity, stopbits=serial.stopbits, turnaround=DEMO_TURNAROUND
        ) as line:
            config = replace(config, serial=replace(serial, port=line.path))
            log.info(
                "demo", serial=line.path, boards=boards, load=load.name if load else "none", **served_faces(config)
            )
            print(try_text(config, simulated[0]) + "\n", flush=True)
            # A site's file of its own in the temporary folder, so the web face's settings work as on a site.
            site = Path(state_dir) / "gateway.toml"
            write_atomically(site, configuration_text(config, secrets=True).encode(), 0o600)
            await serve(lambda: load_config(site), budget)


def served_faces(config: Config) -> dict[str, str]:
    """Face -> address of the faces the configuration enables."""
    faces = {
        "bacnet": (config.bacnet.enabled, f"{config.bacnet.address}:{config.bacnet.port}"),
        "snmp": (config.snmp.enabled, f"{config.snmp.address}:{config.snmp.port}"),
        "modbus_tcp": (config.modbus_tcp.enabled, f"{config.modbus_tcp.address}:{config.modbus_tcp.port}"),
        "web": (config.web.enabled, f"https://{config.web.address}:{config.web.port}/"),
    }
    return {face: address for face, (enabled, address) in faces.items() if enabled}


def try_text(config: Config, board: Board) -> str:
    """What to run against each face the demo serves, around the board's swinging channel."""
    address, channel = board.load.swing if board.load and board.load.swing else (board.primary_address, 1)
    pointmap = load_pointmap()
    current = pointmap.find("current", group="branch", channel=channel)
    status = pointmap.find("alarm_status", group="alarms", channel=channel)
    first = pointmap.find("current", group="branch", channel=1)
    lines = [f"Try, on node {address} (BACnet device, SNMP panel index, Modbus TCP unit):"]
    if board.load and board.load.swing:
        lines.append(
            f"Channel {channel} of node {address} goes over its high-current threshold for "
            f"{SWING_HOLD:g} s every {SWING_EVERY / 60:g} minutes, first {SWING_START:g} s after start; "
            "its High alarm latches until cleared."
        )
    if config.bacnet.enabled:
        device = config.bacnet.device_id_offset + address
        lines.append(
            f"BACnet/IP  {config.bacnet.address.ip}:{config.bacnet.port} (any BACnet explorer): device "
            f"{device}, analog-input {current.register} = current of channel {channel} (subscribe COV); "
            f"analog-value {av_instances(pointmap)[status.register]} = its alarm status "
            "(write 0 to clear the latched alarm)"
        )
    if config.snmp.enabled:
        layout = default_layout()
        snmp = f"-v2c -c {config.snmp.read_community} {config.snmp.address}:{config.snmp.port}"
        current_oid = _dotted(layout.column_of(current).oid + (address, channel))
        status_oid = _dotted(layout.column_of(status).oid + (address, channel))
        lines.append(f"SNMP v2c   snmpget {snmp} {current_oid} {status_oid}  (current in mA, alarm status)")
        if config.snmp.write_community:
            lines.append(
                f"           clear: snmpset -v2c -c {config.snmp.write_community} "
                f"{config.snmp.address}:{config.snmp.port} {status_oid} i 0"
            )
    if config.modbus_tcp.enabled:
        mbpoll = f"mbpoll -m tcp -p {config.modbus_tcp.port} -a {address}"
        lines.append(
            f"Modbus TCP {mbpoll} -r {first.register} -c 42 -1 {config.modbus_tcp.address}  "
            "(currents of channels 1-42, 0.1 A)"
        )
        lines.append(
            f"           {mbpoll} -r {status.register} -1 {config.modbus_tcp.address}  (alarm status); "
            f"clear: {mbpoll} -r {status.register} -1 {config.modbus_tcp.address} 0"
        )
    if config.web.enabled:
        login = {
            DEMO_PASSWORD_HASH: "user admin, password demo",
            None: "no login: the demo's password holds on loopback only, set web.password_hash",
        }.get(config.web.password_hash, "user admin, your password")
        lines.append(
            f"Web        https://{config.web.address}:{config.web.port}/nodes/{address} in a browser "
            f"(self-signed certificate), {login}: live values, Clear latched alarms"
        )
    return "\n".join(lines)


def _dotted(oid: tuple[int, ...]) -> str:
    return "." + ".".join(map(str, oid))
