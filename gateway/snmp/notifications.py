"""Notifications to every configured receiver: v2c traps with the trap community (notify_hosts),
and for each SNMPv3 user's receivers, traps signed by this engine or informs (acknowledged).

    coldStart                                    when the agent starts
    bcpmChannelAlarmRaised / ...Cleared          alarm bits of a CT channel (latching and non-latching)
    bcpmVoltageAlarmRaised / ...Cleared          alarm bits of a line-to-line pair
    bcpmNodeLost / bcpmNodeRestored              a node stops / starts answering again
    bcpmNetworkNumberConflict / ...Cleared       the BACnet network doctor's findings (NetworkFinding)
    bcpmDeviceIdConflict / ...Cleared
    bcpmNotificationsHeldBack                    what snmp.trap_rate held back, per panel

`traps_for` turns a node event into traps (pure); `Notifier` configures the engine's notification
targets once and sends. Notifications leave from the agent's own socket. An inform is sent again
after snmp.inform_timeout, snmp.inform_retries times; at most `MAX_PENDING_INFORMS` wait for their
acknowledgement at each receiver (more are dropped), and each receiver's are counted.

Calm: node events (not the doctor's rare findings) are sent at most snmp.trap_rate a second, with
a burst of one second's worth (every receiver gets every notification, so one `TokenBucket` paces
them all). Beyond that they
are held back: after `SUMMARY_AFTER`, one bcpmNotificationsHeldBack per panel says how many and
which channels, and one log line says it for all panels. Nothing is lost meanwhile but the
traps: the tables (and BACnet) serve every alarm status as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import ntforg
from pysnmp.proto import rfc1902

from gateway.config import SnmpSettings
from gateway.findings import NetworkFinding
from gateway.hub import EventHub, Subscription
from gateway.logging import peer_events
from gateway.nodes.api import NodeAPI
from gateway.nodes.events import AlarmChanged, NodeEvent, NodeOffline, NodeOnline, RegistersRead
from gateway.pointmap import Point, PointMap
from gateway.snmp.controller import NO_VIEW, READ_VIEW
from gateway.snmp.readers import SYNTAX
from gateway.snmp.tree import Column, Layout

log = structlog.get_logger(__name__)

SNMP_TRAP_OID = (1, 3, 6, 1, 6, 3, 1, 1, 4, 1, 0)
COLD_START = (1, 3, 6, 1, 6, 3, 1, 1, 5, 1)
SUMMARY_AFTER = 1.0  # seconds from the first notification held back to the summaries
_CHANNELS_SIZE = 255  # of bcpmNotifyChannels (DisplayString)

MAX_PENDING_INFORMS = 64  # at one receiver

_PRINCIPAL = "bcpm-trap"
_PARAMS = "bcpm-trap-params"
_TARGET = "bcpm-notification"
_RECEIVER_TAG = "bcpm-receiver"  # of every trap receiver, v2c and v3
# The trap community's entry carries a tag no receiving address has, so a request using it is not
# accepted as a community of the agent (it is only for sending).
_SEND_ONLY_TAG = "bcpm-send-only"
_STATUS_KEYS = ("alarm_status", "voltage_alarm_status")


@dataclass(frozen=True, slots=True)
class Trap:
    oid: tuple[int, ...]
    objects: tuple[tuple[Column, int | str], ...]  # notification objects and their values


def alarm_transition(event: NodeEvent) -> AlarmChanged | None:
    """The event if it is a channel or voltage alarm status that changed from a known value.

    The first reading of a status (old_bits None) is where it stands at start, not a transition.
    """
    if isinstance(event, AlarmChanged) and event.old_bits is not None and event.point.key in _STATUS_KEYS:
        return event
    return None


def traps_for(event: NodeEvent | NetworkFinding, layout: Layout, measured: float | int | None = None) -> list[Trap]:
    """The traps a node event calls for (none for value changes and global alarm summaries).

    ``measured`` is the alarm's current (channel) or line-to-line voltage (pair), if known.
    """
    objects = {column.name: column for column in layout.notify_objects}
    notifications = {n.name: n.oid for n in layout.notifications}
    panel = objects["bcpmNotifyPanel"]
    match event:
        case NodeOffline(address=address, reason=reason):
            return [Trap(notifications["bcpmNodeLost"], ((panel, address), (objects["bcpmNotifyReason"], reason)))]
        case NodeOnline(address=address):
            return [Trap(notifications["bcpmNodeRestored"], ((panel, address),))]
        case NetworkFinding(kind=kind, number=number, other=other, cleared=cleared):
            name = f"bcpm{'NetworkNumber' if kind == 'network' else 'DeviceId'}Conflict{'Cleared' if cleared else ''}"
            return [
                Trap(
                    notifications[name],
                    ((objects["bcpmNotifyBacnetNumber"], number), (objects["bcpmNotifyBacnetOther"], other)),
                )
            ]
        case AlarmChanged(point=Point(channel=int(channel)) as point) if alarm_transition(event):
            voltage = point.key == "voltage_alarm_status"
            kind = "Voltage" if voltage else "Channel"
            quantity = objects["bcpmNotifyVoltage" if voltage else "bcpmNotifyCurrent"]
            value = quantity.to_snmp(measured)
            traps = []
            for change, bits in (("Raised", event.raised), ("Cleared", event.cleared)):
                if bits:
                    values: list[tuple[Column, int | str]] = [
                        (panel, event.address),
                        (objects["bcpmNotifyChannel"], channel),
                        (objects["bcpmNotifyStatus"], event.new_bits),
                        (objects["bcpmNotifyBits"], bits),
                    ]
                    if value is not None:
                        values.append((quantity, value))
                    traps.append(Trap(notifications[f"bcpm{kind}Alarm{change}"], tuple(values)))
            return traps
    return []


def channel_label(event: NodeEvent) -> str | None:
    """How bcpmNotifyChannels names the channel (7) or line-to-line pair (V1) of an alarm event."""
    if isinstance(event, AlarmChanged) and event.point.channel is not None:
        return f"V{event.point.channel}" if event.point.key == "voltage_alarm_status" else str(event.point.channel)
    return None


class TokenBucket:
    """``rate`` a second, ``burst`` at once."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def delay(self) -> float:
        """Seconds until a token is there."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now


@dataclass
class InformReceiver:
    """A receiver of informs, and what became of those sent to it."""

    target: str  # the notification target that sends to it alone
    address: str
    pending: int = 0  # sent, not yet acknowledged nor given up
    sent: int = 0
    acknowledged: int = 0
    failed: int = 0  # not acknowledged after every retry
    dropped: int = 0  # not sent: MAX_PENDING_INFORMS were pending


@dataclass
class _HeldBack:
    """What was held back about one panel since its last summary."""

    count: int = 0
    channels: set[str] = field(default_factory=set)

    def channel_list(self) -> str:
        ordered = sorted(self.channels, key=lambda label: (label.startswith("V"), int(label.lstrip("V"))))
        return ",".join(ordered)[:_CHANNELS_SIZE]


def measured_point(pointmap: PointMap, status: Point) -> Point:
    """The current of an alarm's channel, or the line-to-line voltage of a voltage alarm's pair."""
    if status.key == "voltage_alarm_status":
        return pointmap.find("volts_ll", group="voltage", phase=status.channel)
    return next(
        p
        for p in pointmap.points
        if p.key == "current" and p.group in ("branch", "aux") and p.channel == status.channel
    )


class Notifier:
    def __init__(
        self, engine: SnmpEngine, settings: SnmpSettings, layout: Layout, nodes: NodeAPI, hub: EventHub
    ) -> None:
        self._engine = engine
        self._layout = layout
        self._nodes = nodes
        self._hub = hub
        self._originator = ntforg.NotificationOriginator()
        self._pace = TokenBucket(settings.trap_rate, settings.trap_rate)
        self._held: dict[int, _HeldBack] = {}  # by panel
        self._holding = asyncio.Event()  # set from the first notification held back to its summaries
        self.held_back = 0  # notifications held back, in all
        v3_traps, self.informs = self._v3_receivers(settings)
        self._trap_receivers = self._v2c_receivers(settings) + v3_traps
        if self._trap_receivers:
            config.add_notification_target(engine, _TARGET, _PARAMS, _RECEIVER_TAG, "trap")
        self._unacknowledged = peer_events("snmp informs not acknowledged", level="info")
        self._too_many = peer_events("snmp informs dropped (too many waiting for their acknowledgement)")

    def _v2c_receivers(self, settings: SnmpSettings) -> list[str]:
        if not settings.notify_hosts:
            return []
        engine = self._engine
        config.add_v1_system(engine, _PRINCIPAL, settings.trap_community, transportTag=_SEND_ONLY_TAG)
        config.add_vacm_user(
            engine, 2, _PRINCIPAL, "noAuthNoPriv", readSubTree=NO_VIEW, writeSubTree=NO_VIEW, notifySubTree=READ_VIEW
        )
        config.add_target_parameters(engine, _PARAMS, _PRINCIPAL, "noAuthNoPriv", mpModel=1)  # v2c
        for number, (host, port) in enumerate(settings.notify_hosts):
            config.add_target_address(
                engine, f"bcpm-receiver-{number}", udp.DOMAIN_NAME, (host, port), _PARAMS, tagList=_RECEIVER_TAG
            )
        return [f"{host}:{port}" for host, port in settings.notify_hosts]

    def _v3_receivers(self, settings: SnmpSettings) -> tuple[list[str], list[InformReceiver]]:
        """The users' trap receivers, and their inform receivers: each of those alone under a tag
        of its own, with a notification target of its own, so that its acknowledgements are its own.
        (The user, and its VACM notify view, are the agent's.)"""
        engine, traps, informs = self._engine, [], []
        for user in settings.users:
            parameters = f"bcpm-v3-{user.name}"
            if user.notify_hosts:
                config.add_target_parameters(engine, parameters, user.name, user.level, mpModel=3)
            inform = user.notify_type == "inform"
            for number, (host, port) in enumerate(user.notify_hosts):
                target = f"bcpm-{user.name}-{number}"
                config.add_target_address(
                    engine,
                    target,
                    udp.DOMAIN_NAME,
                    (host, port),
                    parameters,
                    timeout=round(settings.inform_timeout * 100),  # hundredths of a second
                    retryCount=settings.inform_retries,
                    tagList=target if inform else _RECEIVER_TAG,
                )
                if inform:
                    config.add_notification_target(engine, target, parameters, target, "inform")
                    informs.append(InformReceiver(target, f"{host}:{port}"))
                else:
                    traps.append(f"{host}:{port}")
        return traps, informs

    @property
    def receivers(self) -> list[str]:
        return self._trap_receivers + [receiver.address for receiver in self.informs]

    def send(self, oid: tuple[int, ...], objects: tuple[tuple[Column, int | str], ...] = ()) -> None:
        if not self._trap_receivers and not self.informs:
            return
        var_binds = [
            (SNMP_TRAP_OID, rfc1902.ObjectIdentifier(oid)),
            *((column.oid + (0,), SYNTAX[column.smi](value)) for column, value in objects),
        ]
        try:
            if self._trap_receivers:
                self._originator.send_varbinds(self._engine, _TARGET, None, b"", var_binds)
            for receiver in self.informs:
                self._inform(receiver, var_binds)
        except Exception:  # a notification that cannot leave must not stop the agent
            log.exception("snmp notification not sent", notification=oid)

    def _inform(self, receiver: InformReceiver, var_binds: list[tuple[Any, Any]]) -> None:
        if receiver.pending >= MAX_PENDING_INFORMS:
            receiver.dropped += 1
            self._too_many.count(receiver.address, f"{receiver.pending} waiting")
            return
        receiver.pending += 1
        receiver.sent += 1
        self._originator.send_varbinds(self._engine, receiver.target, None, b"", var_binds, self._answered, receiver)

    def _answered(
        self, engine: Any, handle: Any, error: Any, status: Any, index: Any, var_binds: Any, receiver: InformReceiver
    ) -> None:
        receiver.pending -= 1
        if error:
            receiver.failed += 1
            self._unacknowledged.count(receiver.address, str(error))
        else:
            receiver.acknowledged += 1

    @property
    def counts(self) -> dict[str, int]:
        """Notifications held back, and informs sent, acknowledged, failed and dropped (all receivers)."""
        counts = {"traps_held_back": self.held_back}
        for what in ("sent", "acknowledged", "failed", "dropped"):
            if self.informs:
                counts[f"informs_{what}"] = sum(getattr(receiver, what) for receiver in self.informs)
        return counts

    async def run(self, events: Subscription) -> None:
        """Send the traps of node events until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._summaries())
            async for event in events:
                alarm = alarm_transition(event)
                measured = None if alarm is None else await self._measured(alarm)
                for trap in traps_for(event, self._layout, measured):
                    if isinstance(event, NetworkFinding):  # rare, and the gateway's, not a panel's
                        self.send(trap.oid, trap.objects)
                    else:
                        self._paced(trap, event.address, channel_label(event))

    def _paced(self, trap: Trap, panel: int, channel: str | None) -> None:
        if not self._holding.is_set() and self._pace.take():
            self.send(trap.oid, trap.objects)
            return
        held = self._held.setdefault(panel, _HeldBack())
        held.count += 1
        if channel is not None:
            held.channels.add(channel)
        self.held_back += 1
        self._holding.set()

    async def _summaries(self) -> None:
        """One bcpmNotificationsHeldBack per panel for what was held back, a while after it started."""
        objects = {column.name: column for column in self._layout.notify_objects}
        summary = next(n.oid for n in self._layout.notifications if n.name == "bcpmNotificationsHeldBack")
        while True:
            await self._holding.wait()
            await asyncio.sleep(SUMMARY_AFTER)  # a storm is summed up, not followed
            held, self._held = self._held, {}
            for panel, what in sorted(held.items()):
                while not self._pace.take():
                    await asyncio.sleep(self._pace.delay())
                self.send(
                    summary,
                    (
                        (objects["bcpmNotifyPanel"], panel),
                        (objects["bcpmNotifyHeldBack"], what.count),
                        (objects["bcpmNotifyChannels"], what.channel_list()),
                    ),
                )
            log.info(
                "snmp notifications held back (snmp.trap_rate)",
                trap_rate=self._pace.rate,
                held_back={panel: what.count for panel, what in sorted(held.items())},
                total=self.held_back,
            )
            if not self._held:
                self._holding.clear()

    async def _measured(self, event: AlarmChanged) -> float | int | None:
        """The alarm's current or voltage as the meter had it at the alarm.

        The status and the measurement are read by different transactions of a poll cycle: look
        again after each block read (for at most about a cycle) until the cache holds a
        measurement read no earlier than the status.
        """
        node = self._nodes.nodes.get(event.address)
        if node is None:
            return None
        point = measured_point(self._nodes.pointmap, event.point)
        since = node.cache.reading(event.point).timestamp or 0.0
        statistics = self._nodes.statistics()
        cycle = statistics.last_cycle.duration if statistics.last_cycle else 0.0
        reads = self._hub.subscribe(RegistersRead)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * cycle + statistics.poll_interval):
                    while (node.cache.reading(point).timestamp or 0.0) < since:
                        await reads.get()
        finally:
            reads.close()
        value = node.cache.reading(point).value
        return None if isinstance(value, str) else value
