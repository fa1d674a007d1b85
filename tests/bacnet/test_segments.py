"""Answers fit the max APDU the client's request gives, header included (ASHRAE 135 5.2.1.2):
every APDU counted on the wire by a raw client, for every max APDU a client may advertise, with
the shipped settings (and the full stack without fast reads); the segments put back together are
the whole answer."""

from __future__ import annotations

import pytest
from bacpypes3.apdu import AbortReason
from bacpypes3.constructeddata import ArrayOf
from bacpypes3.primitivedata import ObjectIdentifier

from tests.bacnet.conftest import bacnet_config, serving
from tests.bacnet.raw import (
    ABORT,
    COMPLEX_ACK,
    SEGMENTED,
    RawClient,
    read_property,
    read_property_multiple,
    reassembled,
    routed,
)

MAX_APDUS = (50, 128, 206, 480, 1024, 1476)  # every max APDU a request can give (20.1.2.5)
MORE_THAN_64 = 65  # Max_Segments_Accepted "more than 64": no limit
NODE = 1


async def answer(gateway, request, *, invoke: int, max_apdu: int, max_segments: int = MORE_THAN_64) -> list[bytes]:
    network = gateway.config.bacnet.network
    datagram = routed(
        network, NODE, request, invoke=invoke, max_apdu=max_apdu, max_segments=max_segments, segmented_accepted=True
    )
    async with RawClient(gateway.config.bacnet.port) as client:
        await client.send(datagram)
        return await client.answer_in_segments(network, NODE, invoke)


def object_list(apdus: list[bytes]) -> list[ObjectIdentifier]:
    return list(reassembled(apdus).propertyValue.cast_out(ArrayOf(ObjectIdentifier)))


@pytest.mark.parametrize("max_apdu", MAX_APDUS)
async def test_every_segment_of_a_node_object_list_fits_the_client_max_apdu(bacnet_gateway, max_apdu) -> None:
    gateway, _ = bacnet_gateway
    apdus = await answer(gateway, read_property("device,50001", "object-list"), invoke=7, max_apdu=max_apdu)
    assert len(apdus) > 1 and all(apdu[0] & 0xF8 == COMPLEX_ACK | SEGMENTED for apdu in apdus)
    assert max(len(apdu) for apdu in apdus) == max_apdu  # full segments, and never more
    assert len(object_list(apdus)) > 1900


@pytest.mark.parametrize("max_apdu", MAX_APDUS)
async def test_every_segment_of_a_read_of_all_fits_the_client_max_apdu(bacnet_gateway, max_apdu) -> None:
    gateway, _ = bacnet_gateway
    objects = ["analog-input,1336", "analog-value,1", "multi-state-value,1"]
    if max_apdu >= 206:  # the device's own, with its 9.5 KB Object_List, takes 64 segments of 201 bytes
        objects.append("device,50001")
    apdus = await answer(
        gateway,
        read_property_multiple([(objid, ["all"]) for objid in objects]),
        invoke=8,
        max_apdu=max_apdu,
        max_segments=64,
    )
    assert apdus[0][0] & 0xF0 == COMPLEX_ACK
    assert max(len(apdu) for apdu in apdus) <= max_apdu
    results = reassembled(apdus).listOfReadAccessResults
    assert [result.objectIdentifier for result in results] == [ObjectIdentifier(objid) for objid in objects]


@pytest.mark.parametrize("fast_reads", [True, False])  # answered from encodings, or by the full stack
async def test_a_client_of_50_bytes_gets_small_answers_whole_and_an_abort_beyond_its_segments(
    make_line, start_gateway, tmp_path, fast_reads
) -> None:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, fast_reads=fast_reads)))
    [name] = await answer(gateway, read_property("analog-input,1336", "object-name"), invoke=1, max_apdu=50)
    assert name[0] == COMPLEX_ACK and len(name) <= 50
    names = read_property_multiple([(f"analog-input,{instance}", ["object-name"]) for instance in range(1336, 1346)])
    segments = await answer(gateway, names, invoke=2, max_apdu=50, max_segments=16)
    assert 1 < len(segments) <= 16 and max(len(apdu) for apdu in segments) <= 50
    assert len(reassembled(segments).listOfReadAccessResults) == 10
    # Its object list takes some 200 segments of 45 bytes: more than the 64 it accepts.
    [abort] = await answer(
        gateway, read_property("device,50001", "object-list"), invoke=3, max_apdu=50, max_segments=64
    )
    assert abort[0] & 0xF0 == ABORT and abort[2] == AbortReason.apduTooLong
