"""The router's BACnet MS/TP port (`upstream.mode = "mstp"`): its Network Port object and data link.

    port = mstp_port(config.upstream, identities)      # built inside the running loop
    port.link.counts, port.link.port_open              # the data link's, for the status line

The port is the upstream serial port as a master node (`gateway.mstp`, its link layer in
`stack.MstpLinkLayer`): Network_Type mstp, MAC_Address `upstream.mac`, Network_Number
`upstream.network` (configured), Max_Master, Max_Info_Frames, APDU_Length 480 (what a frame of
MS/TP carries; no extended frames) and Link_Speed the baud rate. Max_Master is writable, here and
on the router's device object, where the BCPME's guide has it ("write to the Max_Master property of
the device object for the BCPME's virtual router"): checked (the port's MAC to 127), saved in the
state file (it outlives restarts, and wins over `upstream.max_master` from then on, as AV1 and AV2
do over theirs) and applied at once, the data link looking for its successor again within it. The
rest of the port is its configuration, as on the BACnet/IP port.
"""

from __future__ import annotations

from typing import Any

from bacpypes3.errors import ExecutionError
from bacpypes3.pdu import Address, LocalStation
from bacpypes3.primitivedata import Unsigned

from gateway.bacnet.identities import DeviceIdentities
from gateway.bacnet.ip_port import NumberedByTheNetworkLayer
from gateway.bacnet.local_objects import GuardedWrites
from gateway.bacnet.stack import MstpLinkLayer
from gateway.config import UpstreamSettings
from gateway.mstp import MstpLink, MstpSettings
from gateway.serialport import PortSettings, driver_keys

__all__ = ["MSTP_APDU", "MaxMaster", "MstpPort", "mstp_port"]

MSTP_APDU = 480  # the largest APDU an MS/TP frame carries (501 octets of NPDU)
PORT_INSTANCE = 3  # the BACnet/IP port is 1, the virtual network's 2


class MaxMaster:
    """The MS/TP port's Max_Master: shown by the port and the router's device object, written by either."""

    def __init__(self, link: MstpLink, identities: DeviceIdentities, value: int) -> None:
        self._link = link
        self._identities = identities
        self.value = value

    async def write(self, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ExecutionError("property", "invalidDataType")
        if not self._link.settings.station <= value <= 127:
            raise ExecutionError("property", "valueOutOfRange")
        await self._identities.save(lambda state: state.with_mstp_max_master(int(value)))
        self._link.set_max_master(int(value))
        self.value = int(value)


class MaxMasterWrites(GuardedWrites):
    """An object that shows the MS/TP port's Max_Master and takes writes of it."""

    _saved_properties = frozenset({"maxMaster"})
    _max_master: MaxMaster

    def show_max_master(self, max_master: MaxMaster) -> None:
        self._max_master = max_master

    @property
    def max_master(self) -> MaxMaster:
        return self._max_master

    @property
    def maxMaster(self) -> Unsigned:
        return Unsigned(self._max_master.value)

    @maxMaster.setter
    def maxMaster(self, value: Any) -> None:
        pass  # `MaxMaster.write` changes it

    async def _write(self, name: str, value: Any) -> None:
        if name == "maxMaster":
            await self._max_master.write(value)
        else:
            await super()._write(name, value)


class MstpPort(MaxMasterWrites, NumberedByTheNetworkLayer):
    """The MS/TP port; Network_Number and its quality are the network layer's, as on the BACnet/IP port."""

    _link_layer: MstpLinkLayer

    @property
    def link(self) -> MstpLink:
        return self._link_layer.link

    @property
    def address(self) -> Address:
        return LocalStation(self.macAddress)


def mstp_port(upstream: UpstreamSettings, identities: DeviceIdentities) -> MstpPort:
    """The MS/TP port on `upstream.port`, Max_Master as last written over BACnet (or configured).
    Build it inside the running loop; its link starts once the router binds it."""
    saved = identities.state.mstp_max_master
    max_master = upstream.max_master if saved is None or saved < upstream.mac else saved
    serial = PortSettings(port=upstream.port, baudrate=upstream.baudrate, section="upstream", **driver_keys(upstream))
    layer = MstpLinkLayer(MstpSettings(serial, upstream.mac, max_master, upstream.max_info_frames, name="upstream"))
    port = MstpPort(
        objectIdentifier=("network-port", PORT_INSTANCE),
        objectName="MS/TP",
        networkType="mstp",
        protocolLevel="bacnet-application",
        macAddress=bytes([upstream.mac]),
        maxInfoFrames=upstream.max_info_frames,
        statusFlags=[0, 0, 0, 0],
        reliability="no-fault-detected",
        outOfService=False,
        changesPending=False,
        apduLength=MSTP_APDU,
        linkSpeed=float(upstream.baudrate),
        networkNumber=upstream.network,
        networkNumberQuality="configured",
    )
    port.show_max_master(MaxMaster(layer.link, identities, max_master))
    port.bring(layer)
    return port
