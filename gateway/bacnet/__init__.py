"""The BACnet/IP face: a virtual router with one routed device per meter node, and
optionally a BBMD or a foreign device.

    objects.py        point map -> BACnet objects (type, instance, name, units, COV increment)
    plan.py           config + state + profiles -> the router and node devices (IDs, names)
    status.py         a cached reading -> Present_Value and Reliability
    ede.py            the EDE point list for BMS tools (`bcpm-gateway export-ede`)
    local_objects.py  the bacpypes3 AI/AV of a meter point (value push, checked writes)
    devices.py        the device objects and the router's AV1/AV2
    applications.py   the devices' applications (objects built on demand, protection, TimeSync,
                      ReinitializeDevice)
    cov_limits.py     the COV subscription caps of the whole gateway
    pool.py           the meter objects built in memory, the least recently used dropped first
    clock.py          the clock TimeSynchronization sets
    bdt.py            bdt.ini -> the broadcast distribution table (checked line by line)
    shares.py         fair shares: requests per source, unconfirmed requests, saved writes
    ip_port.py        the router's BACnet/IP port in its mode: normal, BBMD or foreign device
    errors.py         failed meter writes -> BACnet errors
    building.py       making the router and node applications, on one virtual network
    identities.py     device names and IDs while running: checked unique, saved; Database_Revision
    network.py        running them: start, node events, the doctor's questions, close
    subscriptions.py  COV subscriptions kept in the state file across restarts, taken up again
    face.py           `BacnetFace`: builds the network, follows the node events, reloads bdt.ini
    stack/            bacpypes3, mended and sped up: the one place that knows its insides (its
                      workarounds, COV subscriptions, DeviceCommunicationControl, the BACnet/IP
                      sockets' hooks, the ports and link layers: BBMD, foreign device, virtual
                      network); `install_stack()` once, by the composition root
"""

from gateway.bacnet.face import BacnetFace
from gateway.bacnet.identities import forgotten
from gateway.bacnet.plan import DevicePlan, device_plan
from gateway.bacnet.stack import install as install_stack

__all__ = ["BacnetFace", "DevicePlan", "device_plan", "forgotten", "install_stack"]
