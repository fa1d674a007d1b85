"""The BACnet/IP face: a virtual router with one routed device per meter node, and
optionally a BBMD or a foreign device.

Two floors. `stack/` is bacpypes3, mended, sped up and typed: the one place that knows its
insides, installed once by the composition root (`install_stack()`) before any device is built.
The rest is the gateway's BACnet, which uses the stack through its surface
(`gateway.bacnet.stack`) and bacpypes3 only for its data types, PDUs, errors and objects:

    plan.py           config + state + profiles -> the router and node devices (IDs, names);
                      `device_plan`, which the web face and the commands ask too
    objects.py        point map -> BACnet objects (type, instance, name, units, COV increment)
    status.py         a cached reading -> Present_Value and Reliability
    ede.py            the EDE point list for BMS tools (`bcpm-gateway export-ede`)
    local_objects.py  the bacpypes3 AI/AV/MSV of a meter point (value push, checked writes)
    devices.py        the device objects and the router's AV1/AV2
    ip_port.py        the router's BACnet/IP port in its mode: normal, BBMD or foreign device
    applications.py   the devices' applications (objects built on demand, protection,
                      TimeSynchronization, ReinitializeDevice)
    cov_limits.py     the COV subscription caps of the whole gateway
    pool.py           the meter objects built in memory, the least recently used dropped first
    shares.py         fair shares: requests per source, unconfirmed requests, saved writes
    reads.py          reads of meter objects from encodings; ReadPropertyMultiple with bounded work
    fastpath.py       every datagram before bacpypes3: the request limits (`limits.py`), fast reads
    clock.py          the clock TimeSynchronization sets
    bdt.py            bdt.ini -> the broadcast distribution table (checked line by line)
    errors.py         failed meter writes -> BACnet errors
    doctor.py         does anyone else use the virtual network or a device ID of the gateway?
    building.py       making the router and node applications, on one virtual network
    identities.py     device names and IDs while running: checked unique, saved; Database_Revision
    network.py        running them: start, node events, the doctor's questions, close
    subscriptions.py  COV subscriptions kept in the state file across restarts, taken up again
    face.py           `BacnetFace`: builds the network, follows the node events, reloads bdt.ini
    stack/            bacpypes3's workarounds, the application every device runs (COV
                      subscriptions, DeviceCommunicationControl), the BACnet/IP sockets' hooks,
                      the router's ports and link layers (where a new port plugs in: `ports.py`)
"""

from gateway.bacnet.face import BacnetFace
from gateway.bacnet.identities import forgotten
from gateway.bacnet.plan import DevicePlan, device_plan
from gateway.bacnet.stack import install as install_stack

__all__ = ["BacnetFace", "DevicePlan", "device_plan", "forgotten", "install_stack"]
