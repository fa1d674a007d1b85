"""/metrics: the cache, the nodes, the bus and this face's counters in the Prometheus text format.

Every served point with a good value is a sample of a gauge named after its group, quantity and
unit in Prometheus' base units (kW as watts, kVA as volt-amperes, kWh as joules, % as a ratio):

    bcpm_branch_current_amperes{address="1",panel="1",channel="7"} 12.5
    bcpm_meter2_power_watts{address="1",panel="1",meter="3",phase=""} 2410.0

A value the meter lacks, a stale one (node offline) or one never read is left out; the node's
`bcpm_node_online` and `bcpm_node_poll_age_seconds` say why. prometheus_client writes the text.
"""

from __future__ import annotations

import asyncio
import re
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gateway.heap import return_free_heap
from gateway.nodes.cache import Quality
from gateway.pointmap import Point
from gateway.unused import SERVERS_AND_CLIENTS, kept_out
from gateway.web.server import ServerStats
from gateway.web.source import Source, served

with kept_out(*SERVERS_AND_CLIENTS):  # prometheus_client's own servers and clients: never used here
    from prometheus_client import generate_latest, registry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GZIP = 16 + zlib.MAX_WBITS  # zlib's window bits for a gzip member
GZIP_LEVEL = 1  # a sixteenth of the text already; 6 saves a tenth more for six times the CPU
PART = 64 * 1024  # bytes of text sent at a time to a client that takes no gzip

#: Point map unit -> (Prometheus base unit, factor to it).
UNITS = {
    "A": ("amperes", 1.0),
    "V": ("volts", 1.0),
    "Hz": ("hertz", 1.0),
    "kW": ("watts", 1000.0),
    "kVA": ("volt_amperes", 1000.0),
    "kWh": ("joules", 3.6e6),
    "s": ("seconds", 1.0),
    "%": ("ratio", 0.01),
    "": ("", 1.0),
}
#: Words of point keys that name a unit rather than a quantity.
QUANTITY_WORDS = {
    "kw": "power",
    "kva": "apparent_power",
    "kwh": "energy",
    "pf": "power_factor",
    "volts": "voltage",
    "total": "three_phase",
}  # "_total" ends counters only
GROUP_INDEX = {"meter2": "meter", "meter3": "meter"}  # what a point's number is called in a group; else channel


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    help: str
    factor: float
    labels: tuple[str, ...]  # address, panel, then "channel" or "meter" and "phase" where the group has them


_FAMILIES: dict[str, Family] = {}  # by name: points of one group and quantity share one family


def family_of(point: Point) -> Family:
    """The gauge a point's samples belong to (one per group and quantity)."""
    unit, factor = UNITS.get(point.units, ("", 1.0))
    quantity = "_".join(QUANTITY_WORDS.get(word, word) for word in point.key.split("_"))
    name = "_".join(part for part in ("bcpm", point.group, quantity, unit) if part)
    found = _FAMILIES.get(name)
    if found is None:
        index = (GROUP_INDEX.get(point.group, "channel"),) if point.channel is not None else ()
        phase = ("phase",) if point.phase is not None or point.group in GROUP_INDEX else ()
        what = re.sub(r" (Phase [0-9]|Total)$", "", point.name)
        scaled = f", {point.units} scaled to {unit}" if factor != 1 else ""
        found = _FAMILIES[name] = Family(
            name, f"{what} ({point.group}){scaled}", factor, ("address", "panel", *index, *phase)
        )
    return found


def _own_labels(point: Point) -> list[str]:
    """The values of a point's labels after address and panel (see Family.labels)."""
    family = family_of(point)
    return ([str(point.channel)] if point.channel is not None else []) + (
        ["" if point.phase is None else str(point.phase)] if "phase" in family.labels else []
    )


class Collector:
    def __init__(self, source: Source, web: ServerStats, logins_refused: Callable[[], int]) -> None:
        self.source = source
        self.web = web
        self.logins_refused = logins_refused
        self._by_model: dict[str, dict[Family, list[tuple[int, list[str]]]]] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._points()
        yield from self._nodes()
        yield from self._bus()
        yield from self._cpu()
        yield from self._web()

    def _points(self) -> Iterator[Metric]:
        """One gauge at a time, a node's samples of it at a time (the same family again for the
        next node: `Metrics` writes its HELP and TYPE once). A scrape never holds more than one
        node's samples of a family: all of a family's at once (1,344 with 32 nodes, some 0.7 MB of
        objects) took new memory from the allocator that it kept afterwards."""
        nodes = sorted(self.source.nodes.items())
        exported = {model: self._exported(model) for model in {node.profile.model for _, node in nodes}}
        families = {family.name: family for points in exported.values() for family in points}
        for name, family in families.items():
            for address, node in nodes:
                gauge = GaugeMetricFamily(name, family.help, labels=family.labels)
                current = node.cache.current
                head = [str(address), str(node.profile.panel)]
                for register, tail in exported[node.profile.model].get(family, ()):
                    value, quality = current(register)
                    if quality is Quality.GOOD:
                        gauge.add_metric(head + tail, float(value) * family.factor)  # type: ignore[arg-type]
                if gauge.samples:
                    yield gauge

    def _exported(self, model: str) -> dict[Family, list[tuple[int, list[str]]]]:
        """Per model, worked out once: each family's points as (register, their own label values)."""
        found = self._by_model.get(model)
        if found is None:
            found = self._by_model[model] = {}
            for point in self.source.pointmap.for_model(model):
                if served(point) and point.group != "identity":
                    found.setdefault(family_of(point), []).append((point.register, _own_labels(point)))
        return found

    def _nodes(self) -> Iterator[Metric]:
        labels = ["address", "panel"]
        online = GaugeMetricFamily("bcpm_node_online", "1 while the node answers, 0 while offline", labels=labels)
        age = GaugeMetricFamily("bcpm_node_poll_age_seconds", "Seconds since the node last answered", labels=labels)
        transactions = CounterMetricFamily("bcpm_node_transactions", "Bus transactions with the node", labels=labels)
        failures = CounterMetricFamily("bcpm_node_failures", "Bus transactions the node failed", labels=labels)
        info = GaugeMetricFamily(
            "bcpm_node_info",
            "What discovery found at the address",
            labels=[*labels, "model", "serial", "firmware", "board"],
        )
        now = time.time()
        for address, node in sorted(self.source.nodes.items()):
            health, profile = node.health, node.profile
            values = [str(address), str(profile.panel)]
            online.add_metric(values, float(health.online))
            if health.last_success is not None:
                age.add_metric(values, round(now - health.last_success, 3))
            transactions.add_metric(values, health.transactions)
            failures.add_metric(values, health.failures)
            info.add_metric(
                [
                    *values,
                    profile.model,
                    f"0x{profile.serial:08X}",
                    f"RS {profile.firmware_rs} OS {profile.firmware_os}",
                    str(profile.primary_address),
                ],
                1,
            )
        yield from (online, age, transactions, failures, info)

    def _bus(self) -> Iterator[Metric]:
        bus = self.source.bus()
        yield CounterMetricFamily("bcpm_bus_transactions", "RS-485 transactions", value=bus["transactions"])
        yield CounterMetricFamily("bcpm_bus_replies", "RS-485 transactions answered", value=bus["replies"])
        errors = CounterMetricFamily("bcpm_bus_errors", "Failed RS-485 transactions by kind", labels=["kind"])
        for kind, count in bus["errors"].items():
            errors.add_metric([kind], count)
        yield errors
        yield CounterMetricFamily("bcpm_bus_busy_seconds", "Time the line spent in transactions", value=bus["busy_s"])
        for key, name, text in (
            ("cycle_s", "bcpm_poll_cycle_seconds", "Duration of the last poll cycle"),
            (
                "wire_floor_s",
                "bcpm_poll_cycle_floor_seconds",
                "Wire time of the last poll cycle's frames: what the line cannot beat",
            ),
        ):
            if bus[key] is not None:
                yield GaugeMetricFamily(name, text, value=bus[key])
        scan = bus["scan"]
        yield GaugeMetricFamily("bcpm_scan_running", "1 while a scan for meters is under way", value=scan["running"])
        yield GaugeMetricFamily(
            "bcpm_scan_addresses_left", "Addresses the running scan has still to probe", value=scan["left"]
        )
        yield CounterMetricFamily("bcpm_scan_passes", "Scans for meters finished", value=scan["passes"])
        if scan["last_finished"] is not None:
            yield GaugeMetricFamily("bcpm_scan_last_seconds", "Duration of the last scan", value=scan["last_seconds"])
            yield GaugeMetricFamily(
                "bcpm_scan_last_finished_timestamp_seconds", "When the last scan finished", value=scan["last_finished"]
            )

    def _cpu(self) -> Iterator[Metric]:
        """What the faces fell behind by when the CPU was short (the line's comes first)."""
        cpu = self.source.cpu()
        if "faces_rate" in cpu:
            yield GaugeMetricFamily(
                "bcpm_faces_cpu_cores", "CPU the faces' loop may take now, in cores", value=cpu["faces_rate"]
            )
            yield CounterMetricFamily(
                "bcpm_faces_held_back_seconds",
                "Time the faces' loop slept so that the line kept its CPU",
                value=cpu["faces_held_back_s"],
            )
        dropped = CounterMetricFamily(
            "bcpm_datagrams_dropped",
            "Datagrams the kernel dropped for a face's UDP socket whose buffer was full (clients retry)",
            labels=["port"],
        )
        for port, count in sorted(cpu["datagrams_dropped"].items()):
            dropped.add_metric([str(port)], count)
        yield dropped

    def _web(self) -> Iterator[Metric]:
        web = self.web
        yield CounterMetricFamily("bcpm_web_connections", "Connections accepted", value=web.connections)
        yield CounterMetricFamily("bcpm_web_requests", "HTTP requests answered", value=web.requests)
        yield CounterMetricFamily("bcpm_web_redirects", "Plain HTTP requests redirected to HTTPS", value=web.redirected)
        refused = CounterMetricFamily(
            "bcpm_web_refused", "Connections, requests and logins refused or closed, by reason", labels=["reason"]
        )
        for reason, count in (
            ("not_allowed", web.refused_not_allowed),
            ("too_many_connections", web.refused_full),
            ("closed_to_make_room", web.made_room),
            ("request_rate", web.refused_rate),
            ("deadline", web.timed_out),
            ("bad_request", web.bad_requests),
            ("accept_error", web.accept_errors),
            ("login_rate", self.logins_refused()),
        ):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "bcpm_web_internal_errors",
            "Requests answered 500, and connections the server failed",
            value=web.internal_errors,
        )
        history = self.source.wiring.history
        if history is not None:
            yield GaugeMetricFamily(
                "bcpm_web_trend_history_bytes", "Memory the trends' history of the currents takes", value=history.nbytes
            )


class Metrics:
    """What /metrics sends: a snapshot of the text, gzip-compressed, made in a thread of its own at
    most once a poll cycle (`fresh_for()` seconds: the values change no faster), so a scrape costs
    the event loop, where BACnet and SNMP answer, next to nothing; scrapes that come while one is
    made wait for it.

    The text is made a node's samples of one family at a time and each part is compressed before
    the next is made: the whole text (some 1 MB with 4 boards, 4.3 MB with 16) is never in memory
    at once, only the compressed snapshot (a sixteenth to a twentieth of it). A client that takes
    no gzip gets it decompressed while it is sent, a part at a time. One thread makes every
    snapshot, and hands the free pages of the heap back to the system when it is done, so what
    making it took does not stay resident.
    """

    def __init__(self, collector: Collector, fresh_for: Callable[[], float]) -> None:
        self.collector = collector
        self.fresh_for = fresh_for
        self.made = 0  # snapshots made
        self._snapshot: tuple[float, bytes] | None = None  # (monotonic time made, gzip bytes)
        self._making: asyncio.Future[bytes] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="metrics")

    async def snapshot(self) -> bytes:
        """The exposition, gzip-compressed, made within the last `fresh_for()` seconds."""
        if self._snapshot is not None and time.monotonic() - self._snapshot[0] < self.fresh_for():
            return self._snapshot[1]
        if self._making is None:
            self._making = asyncio.get_running_loop().run_in_executor(self._thread, self._make)
            self._making.add_done_callback(self._made)
        return await asyncio.shield(self._making)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _made(self, making: asyncio.Future[bytes]) -> None:
        self._making = None
        if not making.cancelled() and making.exception() is None:
            self._snapshot = (time.monotonic(), making.result())
            self.made += 1

    def _make(self) -> bytes:
        compressor = zlib.compressobj(GZIP_LEVEL, wbits=GZIP)
        parts, last = [], None
        for family in self.collector.collect():
            text = generate_latest(_Only(family))
            if family.name == last:  # more samples of the family just written: its HELP and TYPE once
                text = text.split(b"\n", 2)[2]
            last = family.name
            parts.append(compressor.compress(text))
        parts.append(compressor.flush())
        snapshot = b"".join(parts)
        del parts
        return_free_heap()  # the text and the compressor's state, freed on this thread's own heap
        return snapshot


def decompressed(snapshot: bytes) -> Iterator[bytes]:
    """The text of a gzip snapshot, PART bytes at a time."""
    decompressor = zlib.decompressobj(wbits=GZIP)
    data = snapshot
    while data:
        yield decompressor.decompress(data, PART)
        data = decompressor.unconsumed_tail
    yield decompressor.flush()


class _Only(registry.Collector):
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> list[Metric]:
        return [self.family]
