"""The cached getattr_static gives bacpypes3 the stdlib's answers (gateway/bacnet/stack/speedups.py)."""

from __future__ import annotations

import inspect

from bacpypes3.local.analog import AnalogInputObject

from gateway.bacnet.devices import GatewayDevice, NodeDevice
from gateway.bacnet.local_objects import MeterInput, MeterValue
from gateway.bacnet.stack import speedups

MISSING = object()


async def test_answers_equal_the_stdlib_for_every_property_of_our_objects() -> None:
    objects = [
        MeterInput(objectIdentifier=("analog-input", 1), objectName="a", presentValue=1.0, covIncrement=1.0),
        MeterValue(objectIdentifier=("analog-value", 1), objectName="b", presentValue=1.0, covIncrement=1.0),
        NodeDevice(objectIdentifier=("device", 1), objectName="c", vendorIdentifier=133),
        GatewayDevice(objectIdentifier=("device", 2), objectName="d", vendorIdentifier=133),
        AnalogInputObject(objectIdentifier=("analog-input", 2), objectName="e", description="x"),
    ]
    for obj in objects:
        for name in [*type(obj)._elements, "_cov_criteria", "_app", "__dict__", "no_such_thing"]:
            assert speedups.getattr_static(obj, name, MISSING) is inspect.getattr_static(obj, name, MISSING), name


def test_install_hands_bacpypes3_the_cached_lookup_once() -> None:
    speedups.install()
    speedups.install()
    import bacpypes3.local.object

    assert bacpypes3.local.object.inspect.getattr_static is speedups.getattr_static
    assert bacpypes3.local.object.inspect.isawaitable is inspect.isawaitable
