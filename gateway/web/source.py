"""Everything the web face reads from, or asks of, the rest of the gateway: in this one module.

Reads come from the node cache and counters as they stand (never from the bus), and from the
history of the currents; the actions are a validated write, forgetting a node, a rescan and naming
circuits through the node service, and the gateway's restart request. What only another part of
the gateway knows (BACnet device names, the EDE list, the checks of a BBMD table, the shipped MIB
and PICS, the upstream port's status, the faces' CPU) comes as functions the composition root
hands over (`Wiring`), so this face imports no other. Values are handed out as JSON-ready
dictionaries, which the pages render and the API returns as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from gateway.config import SECRET_KEYS, SECTIONS, Config
from gateway.findings import NetworkFinding
from gateway.hub import EventHub, Subscription
from gateway.nodes.api import NodeAPI, NodeView
from gateway.nodes.cache import Reading
from gateway.nodes.events import AlarmChanged, NodeEvent, NodeOffline, NodeOnline
from gateway.nodes.history import History
from gateway.pointmap import Encoding, Point, PointMap, PollClass, ResetCode, load
from gateway.web.panel import Panels

GLOBAL_RESET = load().find("global_reset").register  # CLEAR_LATCHED there clears every latched alarm of the panel
CLEAR_LATCHED = ResetCode.CLEAR_LATCHED_ALARMS
CHANNEL_QUANTITIES = ("current", "kw", "pf")  # columns of a node's channel table, besides the alarm
METER_TOTALS = ("kw", "kva", "kwh", "pf", "current_avg", "kw_demand")  # per logical meter, phase-less

#: Each node's BACnet device ID and name by Modbus address, as the BACnet face names them now.
DeviceNames = Callable[[], Mapping[int, tuple[int, str]]]


@dataclass(frozen=True, slots=True)
class Wiring:
    """What the composition root hands the web face beyond the node layer and the event hub."""

    restart: Callable[[], None]
    device_names: DeviceNames
    history: History | None  # None: no trends (web.trend_hours = 0)
    ede: Callable[[], str]  # the EDE point list of the devices as they are now
    # What `check-config` checks beyond the keys, on a configuration a restart would run (the
    # BBMD table, its own line in it): raises GatewayError. The settings pages write nothing it refuses.
    check: Callable[[Config], None]
    check_bdt: Callable[[str, Config], None]  # a BBMD table's text, as the BACnet face would take it
    shipped: Callable[[str], bytes]  # a file shipped with the gateway: the MIB module, the PICS
    upstream: Callable[[], dict[str, Any]]  # the upstream port: mode, port, rate, MAC and counters
    cpu: Callable[[], dict[str, Any]]  # the faces' CPU and the datagrams their sockets dropped


def served(point: Point) -> bool:
    """A polled number the faces publish (scale registers only scale others)."""
    return (
        point.poll is not PollClass.NONE and point.encoding is not Encoding.STRING and not point.key.endswith("_scale")
    )


@dataclass(frozen=True, slots=True)
class FaceState:
    name: str
    address: str
    state: str  # "serving" or "off": a face that stops serving stops the whole gateway


class Source:
    def __init__(self, config: Config, nodes: NodeAPI, hub: EventHub, wiring: Wiring) -> None:
        self.config = config
        self._service = nodes
        self._hub = hub
        self.wiring = wiring
        self.restart = wiring.restart
        self._device_names = wiring.device_names
        self._panels = Panels(nodes.pointmap)
        self.started = time.time()
        self.upstream = wiring.upstream
        self.cpu = wiring.cpu

    @property
    def nodes(self) -> Mapping[int, NodeView]:
        return self._service.nodes

    @property
    def pointmap(self) -> PointMap:
        return self._service.pointmap

    def subscribe_events(self) -> Subscription:
        return self._hub.subscribe(AlarmChanged, NodeOnline, NodeOffline, NetworkFinding)

    def refresh_seconds(self) -> float:
        """How often a page asks for values again: a poll cycle (at least the poll interval, and a
        second), since values change no faster than the bus brings them."""
        statistics = self._service.statistics()
        cycle = statistics.last_cycle.duration if statistics.last_cycle else 0.0
        return round(max(1.0, statistics.poll_interval, cycle), 1)

    # --- what the pages and the API show ---

    def faces(self) -> list[FaceState]:
        config = self.config
        listed = (
            ("BACnet/IP", config.bacnet.enabled, f"{config.bacnet.address}:{config.bacnet.port}"),
            (f"SNMP {config.snmp.versions}", config.snmp.enabled, f"{config.snmp.address}:{config.snmp.port}"),
            ("Modbus TCP", config.modbus_tcp.enabled, f"{config.modbus_tcp.address}:{config.modbus_tcp.port}"),
            ("Web (HTTPS)", config.web.enabled, f"{config.web.address}:{config.web.port}"),
        )
        return [
            FaceState(name, address if enabled else "-", "serving" if enabled else "off")
            for name, enabled, address in listed
        ]

    def bus(self) -> dict[str, Any]:
        statistics = self._service.statistics()
        stats, cycle = statistics.line, statistics.last_cycle
        serial = self.config.serial
        return {
            "port": serial.port,
            "baudrate": serial.baudrate,
            "framing": f"8{serial.parity}{serial.stopbits}",
            "poll_interval_s": statistics.poll_interval,
            "cycle_s": round(cycle.duration, 3) if cycle else None,
            "wire_floor_s": round(cycle.wire_time, 3) if cycle else None,
            "transactions_per_s": round(cycle.transactions / cycle.duration, 1) if cycle and cycle.duration else None,
            "transactions": stats.transactions,
            "replies": stats.replies,
            "errors": {"timeout": stats.timeouts, "corrupt": stats.corrupt, "exception": stats.exceptions},
            "stale_bytes": stats.stale_bytes,
            "busy_s": round(stats.busy_seconds, 3),
            "scan": asdict(statistics.scan),
            "upstream": self.upstream(),
        }

    def node_list(self) -> list[dict[str, Any]]:
        names = self._device_names()
        return [self._summary(node, names.get(address)) for address, node in sorted(self.nodes.items())]

    def node_detail(self, address: int) -> dict[str, Any] | None:
        node = self.nodes.get(address)
        if node is None:
            return None
        points = node.cache.readings
        pointmap = self.pointmap
        by_place: dict[tuple[str, str, int | None, int | None], Point] = {}
        for register in points:
            point = pointmap.point_at(register)
            if point is not None and served(point):
                by_place[point.group, point.key, point.channel, point.phase] = point

        def cell(point: Point | None) -> dict[str, Any] | None:
            return None if point is None else value_of(point, node.cache.reading(point))

        channels = []
        names = self._service.circuit_names(address)
        for channel in sorted({c for (group, _, c, _) in by_place if group in ("branch", "aux") and c is not None}):
            group = "aux" if (("aux", "current", channel, channel - 42) in by_place) else "branch"
            phase = channel - 42 if group == "aux" else None
            row: dict[str, Any] = {"channel": channel, "group": group, "name": names.get(channel, "")}
            for key in CHANNEL_QUANTITIES:
                row[key] = cell(by_place.get((group, key, channel, phase)))
            row["alarm"] = cell(by_place.get(("alarms", "alarm_status", channel, None)))
            channels.append(row)
        ordered = sorted(by_place.values(), key=lambda p: p.register)
        return {
            "node": self._summary(node, self._device_names().get(address)),
            "channels": channels,
            "voltage": [cell(p) for p in ordered if p.group == "voltage"],
            "aux_totals": [cell(p) for p in ordered if p.group == "aux" and p.channel is None],
            "meters": [
                cell(p)
                for p in ordered
                if p.group in ("meter2", "meter3") and p.phase is None and p.key in METER_TOTALS
            ],
            "voltage_alarms": [cell(p) for p in ordered if p.key == "voltage_alarm_status"],
            "refresh_s": self.refresh_seconds(),
        }

    def panel(self, address: int) -> dict[str, Any] | None:
        """A node's panel view (`gateway.web.panel`): what changes only when its values do (no poll
        age, no counters); None for no such node."""
        node = self.nodes.get(address)
        return None if node is None else self._panels.of(node, self._service.circuit_names(address))

    def summary(self, address: int) -> dict[str, Any]:
        """A node as the node list shows it (its identity, health and counters now)."""
        return self._summary(self.nodes[address], self._device_names().get(address))

    def circuit_names(self, address: int) -> Mapping[int, str]:
        return self._service.circuit_names(address)

    async def name_circuits(self, address: int, names: Mapping[int, str | None]) -> None:
        await self._service.name_circuits(address, names)

    def trends(self, address: int, channels: Sequence[int]) -> tuple[list[float], dict[int, list[float | None]]]:
        """Sample times and each channel's currents then (see `gateway.nodes.history`)."""
        history = self.wiring.history
        return ([], {}) if history is None else history.series(address, channels)

    def running_settings(self) -> dict[str, dict[str, str]]:
        """Every section and key as it runs, secrets masked."""
        shown: dict[str, dict[str, str]] = {}
        for name in SECTIONS:
            settings = getattr(self.config, name)
            shown[name] = {
                item.name: ("(set)" if getattr(settings, item.name) else "(not set)")
                if item.name in SECRET_KEYS
                else _show(getattr(settings, item.name))
                for item in fields(settings)
            }
        return shown

    def _summary(self, node: NodeView, identity: tuple[int, str] | None) -> dict[str, Any]:
        profile, health = node.profile, node.health
        return {
            "address": node.address,
            "panel": profile.panel,
            "board": profile.primary_address,
            "model": profile.model,
            "serial": f"0x{profile.serial:08X}",
            "firmware": f"RS {profile.firmware_rs} OS {profile.firmware_os}",
            "online": health.online,
            "last_poll_age_s": round(time.time() - health.last_success, 1) if health.last_success else None,
            "transactions": health.transactions,
            "failures": health.failures,
            "went_offline": health.went_offline,
            "last_error": health.last_error,
            "bacnet_device_id": identity[0] if identity else None,
            "bacnet_name": identity[1] if identity else None,
            "snmp_index": node.address,  # the panel index of every SNMP table
        }

    # --- actions ---

    async def clear_latched_alarms(self, address: int) -> None:
        """GLOBAL_RESET = CLEAR_LATCHED: the panel clears every latched alarm (checked like any write)."""
        await self._service.write(address, GLOBAL_RESET, [CLEAR_LATCHED])

    async def forget(self, address: int) -> None:
        """The node is no longer polled, served or saved (the node layer tells every face)."""
        await self._service.forget([address])

    async def rescan(self) -> None:
        """A pass of the background scan of the unused addresses, now."""
        await self._service.rescan()


def value_of(point: Point, reading: Reading) -> dict[str, Any]:
    """A reading for the API and the pages; `shown` is how a page writes it (bitmaps in hex)."""
    value = reading.value
    shown = "-" if value is None else f"0x{value:04X}" if point.encoding is Encoding.BITMAP else str(value)
    return {
        "register": point.register,
        "name": point.label,
        "value": value,
        "shown": shown,
        "units": point.units,
        "quality": str(reading.quality),
    }


def describe(event: NodeEvent | NetworkFinding) -> str:
    """One line for the events page."""
    if isinstance(event, AlarmChanged):
        what = event.point.label
        parts = [
            f"raised 0x{event.raised:04X}" if event.raised else "",
            f"cleared 0x{event.cleared:04X}" if event.cleared else "",
        ]
        return f"node {event.address}: {what} {' '.join(p for p in parts if p)} (now 0x{event.new_bits:04X})"
    if isinstance(event, NetworkFinding):
        return f"BACnet network doctor: {'cleared: ' if event.cleared else ''}{finding(event)}"
    if isinstance(event, NodeOffline):
        return f"node {event.address} offline: {event.reason}"
    return f"node {event.address} online again"


def finding(event: NetworkFinding) -> str:
    what = "network" if event.kind == "network" else "device ID"
    return f"{what} {event.number} is also used by {event.other}"


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ", ".join(_show(item) for item in value) or "(none)"
    return "(none)" if value is None else str(value)
