"""Bounded requests (gateway/bacnet/limits.py) and bounded work per request (gateway/bacnet/reads.py),
over UDP with requests built as bytes: oversized and endless segmented requests, too many at once,
answers that cannot fit, and a big answer that lets other requests through meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.apdu import AbortReason

from gateway.app import Gateway
from gateway.bacnet.limits import SEGMENT_TIMEOUT
from gateway.bacnet.network import BacnetNetwork
from gateway.bacnet.objects import object_specs
from gateway.config import Config
from gateway.pointmap import load
from gateway.sim import SimulatedLine
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.bacnet.raw import (
    ABORT,
    COMPLEX_ACK,
    SEGMENT_ACK,
    RawClient,
    apdu_offset,
    read_property,
    read_property_multiple,
    routed,
    segmented,
)
from tests.support import eventually

NODE = 1
CURRENTS = [f"analog-input,{register}" for register in range(1336, 1378)]
AVS = [f"analog-value,{instance}" for instance in range(1, 211)]


def _objects(count: int) -> list[tuple[tuple[str, int], list[str]]]:
    """The Present_Value of `count` objects of a node (unknown ones past its last)."""
    specs = object_specs(load(), "A")
    return [
        (
            (specs[number].object_type, specs[number].instance)
            if number < len(specs)
            else ("analog-input", 100000 + number),
            ["present-value"],
        )
        for number in range(count)
    ]


async def _gateway(
    make_line: Callable[..., SimulatedLine], start_gateway: Callable[[Config], Any], tmp_path: Path, **bacnet: Any
) -> tuple[Gateway, BacnetNetwork]:
    gateway = await serving(await start_gateway(bacnet_config(make_line(1), tmp_path, **bacnet)))
    network = bacnet_face(gateway).network
    assert network is not None
    await eventually(lambda: network.fast_path.installed, 10, "the fast path")
    return gateway, network


def _abort(apdu: bytes, invoke: int, reason: int) -> bool:
    return apdu[0] == ABORT | 0x01 and apdu[1] == invoke and apdu[2] == reason


async def test_an_unsegmented_request_above_the_max_apdu_is_refused_unread(make_line, start_gateway, tmp_path) -> None:
    gateway, network = await _gateway(make_line, start_gateway, tmp_path, fast_reads=False)
    request = routed(gateway.config.bacnet.network, NODE, read_property_multiple(_objects(200)), invoke=3)
    assert len(request[apdu_offset(request) :]) > 1476
    async with RawClient(gateway.config.bacnet.port) as client:
        answer = await client.ask(request)
        assert _abort(answer[apdu_offset(answer) :], 3, AbortReason.bufferOverflow)
        # a request that fits is answered
        fits = await client.ask(
            routed(
                gateway.config.bacnet.network,
                NODE,
                read_property_multiple([(objid, ["present-value"]) for objid in CURRENTS[:20]]),
            )
        )
        assert fits[apdu_offset(fits)] == COMPLEX_ACK
        broadcast = bytearray(request)
        broadcast[1] = 0x0B  # the same as an Original-Broadcast-NPDU: refused without an answer
        await client.send(bytes(broadcast))
        with pytest.raises(TimeoutError):
            await client.receive(timeout=1.0)
    assert network.fast_path.limits.refused["bufferOverflow"] == 2
    assert len(network.pool) == 20  # the refused requests built nothing


async def test_a_segmented_request_is_bounded_by_max_segments(make_line, start_gateway, tmp_path) -> None:
    gateway, network = await _gateway(make_line, start_gateway, tmp_path, max_segments=2)
    net, port = gateway.config.bacnet.network, gateway.config.bacnet.port
    async with RawClient(port) as client:
        for segment in segmented(net, NODE, read_property_multiple(_objects(150)), invoke=1, size=1000):  # 2 segments
            await client.send(segment)
        answer = await client.answer()
        assert answer[0] & 0xF0 == COMPLEX_ACK
    async with RawClient(port) as client:
        endless = segmented(net, NODE, read_property_multiple(_objects(600)), invoke=2, size=1000)  # 6 segments
        for segment in endless[:3]:
            await client.send(segment)
        assert _abort(await client.answer(), 2, AbortReason.bufferOverflow)  # beyond 2 x 1476 bytes
        for segment in endless[3:]:
            await client.send(segment)  # dropped: that request is over
        with pytest.raises(TimeoutError):
            await client.answer(timeout=2 * SEGMENT_TIMEOUT)
    refused = network.fast_path.limits.refused
    assert refused["bufferOverflow"] == 1 and refused["drop"] == 3


async def test_segmented_requests_at_once_are_capped_per_client_and_overall(make_line, start_gateway, tmp_path) -> None:
    gateway, network = await _gateway(
        make_line, start_gateway, tmp_path, max_segmented_requests=2, max_segmented_requests_per_client=1
    )
    net, port = gateway.config.bacnet.network, gateway.config.bacnet.port

    def first_segment(invoke: int) -> bytes:
        return segmented(net, NODE, read_property_multiple(_objects(200)), invoke=invoke)[0]

    async with (
        RawClient(port, "127.0.0.1") as one,
        RawClient(port, "127.0.0.2") as two,
        RawClient(port, "127.0.0.3") as three,
    ):
        first = await one.ask(first_segment(1))
        assert first[apdu_offset(first)] & 0xF0 == SEGMENT_ACK
        refused = await one.ask(first_segment(2))
        assert _abort(refused[apdu_offset(refused) :], 2, AbortReason.outOfResources)  # one per client
        accepted = await two.ask(first_segment(1))
        assert accepted[apdu_offset(accepted)] & 0xF0 == SEGMENT_ACK
        full = await three.ask(first_segment(1))
        assert _abort(full[apdu_offset(full) :], 1, AbortReason.outOfResources)  # two over the gateway
        await asyncio.sleep(SEGMENT_TIMEOUT * 1.5)  # the unfinished ones fall silent: places free again
        again = await three.ask(first_segment(1))
        assert again[apdu_offset(again)] & 0xF0 == SEGMENT_ACK
    assert network.fast_path.limits.refused["outOfResources"] == 2


async def test_an_answer_that_cannot_fit_is_aborted_before_reading_everything(
    make_line, start_gateway, tmp_path
) -> None:
    gateway, network = await _gateway(make_line, start_gateway, tmp_path, fast_reads=False)
    request = read_property_multiple([(objid, ["all"]) for objid in AVS[:100]])
    async with RawClient(gateway.config.bacnet.port) as client:
        answer = await client.ask(routed(gateway.config.bacnet.network, NODE, request, invoke=9, max_apdu=480))
    assert _abort(answer[apdu_offset(answer) :], 9, AbortReason.segmentationNotSupported)
    assert len(network.pool) < 10  # it stopped at the object that did not fit


async def test_a_big_answer_lets_other_requests_through(make_line, start_gateway, tmp_path) -> None:
    gateway, _ = await _gateway(make_line, start_gateway, tmp_path, fast_reads=False)
    net = gateway.config.bacnet.network
    big = routed(
        net,
        NODE,
        read_property_multiple([(objid, ["all"]) for objid in AVS[:60]]),
        invoke=1,
        max_segments=64,
        segmented_accepted=True,
    )
    small = routed(net, NODE, read_property("analog-input,1336", "present-value"), invoke=2)
    async with RawClient(gateway.config.bacnet.port) as client:
        await client.send(big)
        await asyncio.sleep(0.05)  # the big one is being read
        await client.send(small)
        first = await client.answer()
    assert first[1] == 2, "the small request waited for the big one"


async def test_an_unacknowledged_first_segment_is_sent_again(make_line, start_gateway, tmp_path) -> None:
    gateway, _ = await _gateway(make_line, start_gateway, tmp_path)
    request = read_property_multiple(
        [(objid, ["present-value", "status-flags", "object-name", "description"]) for objid in CURRENTS[:20]]
    )
    datagram = routed(
        gateway.config.bacnet.network, NODE, request, invoke=4, max_apdu=480, max_segments=16, segmented_accepted=True
    )
    async with RawClient(gateway.config.bacnet.port) as client:
        first = await client.ask(datagram)
        again = await client.receive()  # no Segment-ACK from us: the gateway tries again
    assert first[apdu_offset(first)] & 0xF8 == COMPLEX_ACK | 0x08  # a segment
    assert again == first
