"""The BACnet MS/TP link layer: the data link of `gateway.mstp` under bacpypes3's network layer.

    layer = MstpLinkLayer(MstpSettings(PortSettings("/dev/ttyUSB1", 38400), station=127))
    port.bring(layer)                # a `LinkedPort` of Network_Type mstp; the link starts when bound
    MstpLinkLayer.of(router)         # the MS/TP link layers of an application's ports
    layer.judge_with(shares.judge_npdu)   # each NPDU received, before bacpypes3 makes a task of it
    layer.link.counts                # the data link's counters, for the status line
    layer.close()                    # stops the link's thread

Down, an NPDU goes to the MAC of its destination (255 for a local broadcast), as a Data Expecting
Reply frame when its network header says a reply is expected (a confirmed request). Up, the link
hands each NPDU over on its own thread; it is taken to the router's loop, judged (a judge may drop
it, counted, as the BACnet/IP sockets' judge does) and given to the network layer as a PDU from
`LocalStation(mac)`. An NPDU the network layer cannot handle is counted and dropped, as on the
virtual network; one too long for an MS/TP frame (never an answer: the devices' segments fit the
port's APDU length) is counted and dropped too.

The router's device is a station of the MS/TP trunk too, at the port's MAC, as a router device on
MS/TP is (bacpypes3 puts a device on its first port only, here BACnet/IP, and drops what a
neighbour on another port sends it): `StationRouter`, the network layer of every application
(`install()`), takes a request or broadcast that an MS/TP station sends without a destination
network as one to the device, and sends the device's answers and announcements to MS/TP stations
as a neighbour's, without the IP network's source address. Routed traffic is left as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import bacpypes3.app
from bacpypes3.app import Application
from bacpypes3.comm import Server
from bacpypes3.netservice import NetworkAdapter
from bacpypes3.npdu import NPDU
from bacpypes3.pdu import PCI, PDU, Address, GlobalBroadcast, LocalBroadcast, LocalStation, RemoteStation

from gateway.bacnet.stack.fixes import FAILED_DATAGRAMS, RejectUnreachableNetwork
from gateway.logging import PeerEvents
from gateway.mstp import BROADCAST, MstpLink, MstpSettings, Received

__all__ = ["MstpLinkLayer", "NpduJudge", "StationRouter", "install"]

EXPECTING_REPLY = 0x04  # the NPDU control octet's data-expecting-reply bit

#: Judges an NPDU (bytes, its source): None to take it, else the refusal class it was counted in.
NpduJudge = Callable[[bytes, str], PeerEvents | None]


class MstpLinkLayer(Server[PDU]):
    """An MS/TP master node's data link as a bacpypes3 link layer. Build it inside the running loop."""

    def __init__(self, settings: MstpSettings) -> None:
        self.link = MstpLink(settings, on_receive=self._received)
        self.station = settings.station
        self._loop = asyncio.get_running_loop()
        self._judge: NpduJudge | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    @staticmethod
    def of(app: Application) -> list[MstpLinkLayer]:
        """The MS/TP link layers of an application's ports."""
        return [layer for layer in app.link_layers.values() if isinstance(layer, MstpLinkLayer)]

    def judge_with(self, judge: NpduJudge) -> None:
        """Judge every NPDU received with `judge`, before bacpypes3 sees it."""
        self._judge = judge

    def start(self) -> None:
        """Open the port and take part in the token ring (once; `ports.bind_port` does it)."""
        if not self._started:
            self._started = True
            self.link.start()

    async def indication(self, pdu: PDU) -> None:
        destination: Address = pdu.pduDestination
        mac = BROADCAST if destination.addrType == Address.localBroadcastAddr else destination.addrAddr[0]
        npdu = bytes(pdu.pduData)
        try:
            self.link.send(mac, npdu, expecting_reply=len(npdu) > 1 and bool(npdu[1] & EXPECTING_REPLY))
        except ValueError as error:
            FAILED_DATAGRAMS.report.drop(f"to mstp:{mac}", str(error))

    def close(self) -> None:
        self.link.stop()
        for task in self._tasks:
            task.cancel()

    # from the link's thread

    def _received(self, received: Received) -> None:
        try:
            self._loop.call_soon_threadsafe(self._hand_up, received)
        except RuntimeError:  # the router's loop closed: the gateway is stopping
            pass

    # on the router's loop

    def _hand_up(self, received: Received) -> None:
        if self._judge is not None and self._judge(received.npdu, f"mstp:{received.source}") is not None:
            return
        destination = LocalBroadcast() if received.destination == BROADCAST else LocalStation(self.station)
        pdu = PDU(received.npdu, source=LocalStation(received.source), destination=destination)
        task = asyncio.ensure_future(self._up(pdu))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _up(self, pdu: PDU) -> None:
        try:
            await self.response(pdu)
        except Exception as error:  # the NPDU is lost; the link goes on
            FAILED_DATAGRAMS.report.drop(str(pdu.pduSource), repr(error))


class StationRouter(RejectUnreachableNetwork):
    """The network layer of every application; installed by `install()` (see the module)."""

    async def process_npdu(self, adapter: NetworkAdapter, npdu: NPDU) -> None:
        local = self.local_adapter
        if _hosts_device(adapter) and npdu.npduNetMessage is None and npdu.npduDADR is None and local is not None:
            # to the router's device, from a neighbour: as if addressed to it on its first port
            npdu.npduDADR = RemoteStation(local.adapterNet, local.adapterAddr.addrAddr)
        await super().process_npdu(adapter, npdu)

    async def indication(self, pdu: PDU) -> None:
        destination: Address = pdu.pduDestination
        local = self.local_adapter
        hosting = [each for each in self.adapters.values() if _hosts_device(each)]
        if local is None or not hosting:
            await super().indication(pdu)
        elif destination.addrType == Address.globalBroadcastAddr:
            # everywhere; to the MS/TP trunk from the station the device is there
            source = RemoteStation(local.adapterNet, local.adapterAddr.addrAddr)
            for adapter in self.adapters.values():
                routed = None if adapter is local or adapter in hosting else source
                await adapter.process_npdu(_npdu(pdu, LocalBroadcast(), GlobalBroadcast(), routed))
        elif destination.addrType in (Address.remoteStationAddr, Address.remoteBroadcastAddr) and (
            (adapter := self.adapters.get(destination.addrNet)) in hosting
        ):
            neighbour = (
                LocalStation(destination.addrAddr)
                if destination.addrType == Address.remoteStationAddr
                else LocalBroadcast()
            )
            await adapter.process_npdu(_npdu(pdu, neighbour, None, None))
        else:
            await super().indication(pdu)


def _hosts_device(adapter: NetworkAdapter) -> bool:
    return isinstance(adapter.clientPeer, MstpLinkLayer)


def _npdu(pdu: PDU, destination: Address, dadr: Address | None, sadr: Address | None) -> NPDU:
    npdu = NPDU(pdu.pduData, user_data=pdu.pduUserData)
    PCI.update(npdu, pdu)
    npdu.pduDestination, npdu.npduDADR, npdu.npduSADR = destination, dadr, sadr
    npdu.npduHopCount = 255
    return npdu


def install() -> None:
    """Every application's network layer treats the router's device as a station of its MS/TP
    ports (process-wide: bacpypes3 looks the class up by its module name); after
    `fixes.install_rejects()`, whose network layer it extends. Safe to call again."""
    bacpypes3.app.NetworkServiceAccessPoint = StationRouter
