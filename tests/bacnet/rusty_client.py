"""How the tests run rusty-bacnet (PyPI: Python bindings of a BACnet stack written in Rust, sharing
no code with bacpypes3 or @bacnet-js/client), a second independent client on loopback.

    async with rusty_client(gateway_port) as client:      # has found the router and every node
        names = await client.read_property_from_device(50001, oid("device", 50001), prop("object-name"))

On loopback the gateway listens for broadcasts at 127.255.255.255 on its own port, which no other
socket can share with it (rusty-bacnet binds its broadcast socket without SO_REUSEPORT). So the
client is a BBMD with the gateway in its table, as a BMS's BBMD on another subnet is: it forwards
its Who-Is to the gateway (Forwarded-NPDU), which passes it to every node, and every device answers
it directly. Nothing leaves loopback.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import rusty_bacnet as rb
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.primitivedata import ObjectType

from tests.bacnet.client import free_udp_port

__all__ = ["oid", "prop", "rusty_client"]


def oid(object_type: str, instance: int) -> rb.ObjectIdentifier:
    """An object identifier, its type named as bacpypes3 names it ("analog-input")."""
    return rb.ObjectIdentifier(rb.ObjectType.from_raw(int(ObjectType(object_type))), instance)


def prop(name: str) -> rb.PropertyIdentifier:
    """A property identifier named as bacpypes3 names it ("present-value")."""
    return rb.PropertyIdentifier.from_raw(int(PropertyIdentifier(name)))


@contextlib.asynccontextmanager
async def rusty_client(port: int, *, devices: int = 3) -> AsyncIterator[rb.BACnetClient]:
    """A client that has found `devices` devices behind the gateway at 127.0.0.1:`port`."""
    gateway = f"127.0.0.1:{port}"
    async with rb.BACnetClient(
        interface="127.0.0.1", port=free_udp_port(), broadcast_address="127.255.255.255", bbmd=rb.Bbmd([gateway])
    ) as client:
        for _ in range(10):  # the gateway may still be opening its socket
            if len(await client.discover(timeout_ms=1000)) >= devices:
                break
        assert len(await client.discovered_devices()) >= devices, "rusty-bacnet did not find the gateway's devices"
        yield client
