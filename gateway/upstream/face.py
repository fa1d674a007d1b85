"""The upstream face: the second RS-485 port, toward the building system (``[upstream]``).

The port keeps its own clock as the meters' bus does: it runs on a thread of its own with its own
event loop (`gateway.threads.LoopThread`), so BACnet or SNMP work on the main loop cannot stretch
the 3.5-character silences or a master's patience. A port missing at start or lost later (a USB
adapter unplugged) is logged once and opened again with back-off (`gateway.serialport`), without
stopping the gateway. Mode "modbus_rtu" serves the meters as a Modbus RTU slave
(`gateway.upstream.rtu`). Mode "mstp" is the BACnet router's port (`gateway.bacnet.mstp_port`),
not run here.

    face = UpstreamFace(config.upstream, nodes)
    await face.run()                        # until cancelled; face.counts for the status line
"""

from __future__ import annotations

import asyncio
from collections.abc import Set
from dataclasses import asdict

from gateway.config import UpstreamSettings
from gateway.errors import GatewayError
from gateway.modbus_requests import ModbusRequests
from gateway.nodes.api import NodeAPI
from gateway.serialport import PortSettings, driver_keys, serve_port
from gateway.threads import LoopThread
from gateway.upstream.rtu import RtuSlave, SlaveCounts


class UpstreamFace:
    def __init__(self, settings: UpstreamSettings, nodes: NodeAPI) -> None:
        if settings.mode != "modbus_rtu":
            raise GatewayError(f"the upstream face serves mode modbus_rtu, not {settings.mode!r}")
        self.settings = settings
        self.nodes = nodes
        self.listening = asyncio.Event()  # set once the port's thread runs (the port may still be missing)
        self.port = PortSettings(
            port=settings.port,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            section="upstream",
            **driver_keys(settings),
        )
        self.requests = ModbusRequests(nodes, cache_max_age=settings.cache_max_age, read_only=settings.read_only)
        self.slave_counts = SlaveCounts()
        self._slave: RtuSlave | None = None

    @property
    def port_open(self) -> bool:
        slave = self._slave
        return slave is not None and slave.made.done() and not slave.lost.done()

    @property
    def counts(self) -> dict[str, int]:
        """What the port heard and answered; ``port_open`` 1 while it is open."""
        return {**asdict(self.slave_counts), "port_open": int(self.port_open)}

    def upstream_counts(self) -> dict[str, int]:
        return self.counts

    def units(self) -> Set[int]:
        """The units answered now: those configured, or the meters' own addresses."""
        return set(self.settings.units) if self.settings.units is not None else self.nodes.nodes.keys()

    async def run(self) -> None:
        thread = LoopThread("upstream")
        thread.start(self._serve)
        self.listening.set()
        try:
            await thread.wait()
        finally:
            thread.stop()

    async def _serve(self) -> None:
        await serve_port("upstream", self.port, self._new_slave)

    def _new_slave(self) -> RtuSlave:
        self._slave = RtuSlave(self.port, self.requests, self.units, self.slave_counts)
        return self._slave
