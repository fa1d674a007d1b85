"""The EDE point list: BACnet's Engineering Data Exchange CSV (B.I.G.-EU layout 2.3), which BMS
engineering tools import to create their points without a network scan.

    text = ede_text(plan, project="Data hall 2")

Semicolon-separated, one row per device and per object, in the 16 columns of the layout:
keyname; device obj.-instance; object-name; object-type; object-instance; description;
present-value-default; min-present-value; max-present-value; settable; supports COV; hi-limit;
low-limit; state-text-reference; unit-code; vendor-specific-address. Object types and units are
the numeric BACnet codes; the vendor-specific address of a meter point is
"modbus <address>:<register>".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date

from bacpypes3.basetypes import EngineeringUnits
from bacpypes3.primitivedata import ObjectType

from gateway.bacnet.objects import ObjectSpec
from gateway.bacnet.plan import ROUTER_SETTINGS, DevicePlan, NodePlan

__all__ = ["ede_text"]

LAYOUT = "2.3"
COLUMNS = (
    "keyname",
    "device obj.-instance",
    "object-name",
    "object-type",
    "object-instance",
    "description",
    "present-value-default",
    "min-present-value",
    "max-present-value",
    "settable",
    "supports COV",
    "hi-limit",
    "low-limit",
    "state-text-reference",
    "unit-code",
    "vendor-specific-address",
)
_Row = list[str]
_ABBREVIATIONS = {"device": "DEV", "analog-input": "AI", "analog-value": "AV", "multi-state-value": "MV"}


def ede_text(plan: DevicePlan, project: str, today: date | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(["#Engineering-Data-Exchange - B.I.G.-EU"])
    writer.writerow(["PROJECT_NAME", project])
    writer.writerow(["VERSION_OF_REFERENCEFILE", "1"])
    writer.writerow(["TIMESTAMP_OF_LAST_CHANGE", (today or date.today()).isoformat()])
    writer.writerow(["AUTHOR_OF_LAST_CHANGE", "bcpm-gateway export-ede"])
    writer.writerow(["VERSION_OF_LAYOUT", LAYOUT])
    writer.writerow(["#mandatory"] * 5 + ["optional"] * (len(COLUMNS) - 5))
    writer.writerow(["# " + COLUMNS[0], *COLUMNS[1:]])
    writer.writerows(_rows(plan))
    return out.getvalue()


def _rows(plan: DevicePlan) -> Iterator[_Row]:
    router = plan.router
    yield _device_row(router.instance, router.name, "BACnet router of the BCPM gateway")
    for setting in ROUTER_SETTINGS:
        yield _row(
            router.instance,
            router.name,
            "analog-value",
            setting.instance,
            setting.name,
            description="applied at the next restart",
            low=setting.valid.start,
            high=setting.valid.stop - 1,
            settable=True,
            units="noUnits",
            address="",
        )
    for node in plan.nodes:
        yield _device_row(node.instance, node.name, node.description)
        for spec in node.objects:
            yield _object_row(node, spec)


def _device_row(instance: int, name: str, description: str) -> _Row:
    return _row(
        instance,
        name,
        "device",
        instance,
        name,
        description=description,
        settable=False,
        cov=False,
        units=None,
        address="",
    )


def _object_row(node: NodePlan, spec: ObjectSpec) -> _Row:
    return _row(
        node.instance,
        node.name,
        spec.object_type,
        spec.instance,
        spec.name,
        description=spec.describe(node.circuit_names),
        low=spec.min_value,
        high=spec.max_value,
        settable=spec.writable,
        units=None if spec.codes else spec.units,
        address=f"modbus {node.address}:{spec.point.register}",
    )


def _row(
    device: int,
    device_name: str,
    object_type: str,
    instance: int,
    name: str,
    *,
    description: str,
    settable: bool,
    units: str | None,
    address: str,
    low: float | None = None,
    high: float | None = None,
    cov: bool = True,
) -> _Row:
    type_abbreviation = _ABBREVIATIONS[object_type]
    return [
        f"{device_name}.{type_abbreviation}{instance}",
        str(device),
        name,
        str(int(ObjectType(object_type))),
        str(instance),
        description,
        "",
        _number(low),
        _number(high),
        "Y" if settable else "N",
        "Y" if cov else "N",
        "",
        "",
        "",
        "" if units is None else str(int(EngineeringUnits(units))),
        address,
    ]


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"
