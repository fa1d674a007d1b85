"""Power cuts: SIGKILL at random moments during a storm of BACnet identity writes, then a restart.

The state file must always load, and every Object_Name / Object_Identifier write the gateway
acknowledged before the kill must be in it (or the one write still in flight, which may have
landed just before the kill).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.state import StateStore
from tests.bacnet.client import Client, free_udp_port
from tests.support import config_file

ROUNDS = 6
NODES = (1, 2)


@dataclass
class Writes:
    """What one node's identity is known to be: acknowledged values, and the one in flight."""

    name: str | None = None
    instance: int | None = None
    in_flight: dict[str, object] = field(default_factory=dict)


async def _storm(client: Client, writes: dict[int, Writes], rng: random.Random, round_: int) -> None:
    step = 0
    while True:
        step += 1
        for address in NODES:
            known = writes[address]
            target = client.node(address)
            current = f"device,{known.instance if known.instance is not None else 50000 + address}"
            if step % 3:
                name = f"panel-{address}-r{round_}-{step}"
                known.in_flight = {"name": name}
                await client.write(target, current, "object-name", name)
                known.name = name
            else:
                instance = 60000 + 1000 * address + rng.randrange(1000)
                known.in_flight = {"instance": instance}
                await client.write(target, current, "object-identifier", ObjectIdentifier(("device", instance)))
                known.instance = instance
            known.in_flight = {}


async def _up(client: Client) -> None:
    await client.find_router(timeout=30)
    for address in NODES:  # the node devices answer once discovery is done
        for _ in range(100):
            with contextlib.suppress(Exception):
                await client.read(client.node(address), "device,4194303", "object-name")
                break
            await asyncio.sleep(0.1)


async def test_sigkill_during_identity_writes_never_breaks_the_state_or_loses_an_acknowledged_write(
    make_line, tmp_path: Path
) -> None:
    line = make_line(1)
    port = free_udp_port()
    state_file = tmp_path / "state.json"
    config = config_file(
        line,
        tmp_path,
        serial={"scan": "1-3"},
        log={"level": "warning"},
        bacnet={"enabled": True, "address": "127.0.0.1/8", "port": port},
    )
    rng = random.Random(1)
    writes = {address: Writes() for address in NODES}
    for round_ in range(ROUNDS):
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "run", "--config", str(config)], stderr=subprocess.DEVNULL
        )
        client = Client(port)
        try:
            await _up(client)
            storm = asyncio.create_task(_storm(client, writes, rng, round_))
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            process.kill()  # the power cut
            process.wait()
            storm.cancel()
            await asyncio.gather(storm, return_exceptions=True)
        finally:
            client.close()
            process.kill()
            process.wait()
        overrides = StateStore(state_file).load().overrides  # raises if the file is broken
        for address, known in writes.items():
            saved = overrides.get(address)
            assert saved is not None
            allowed_names = {known.name, known.in_flight.get("name")}
            allowed_instances = {known.instance, known.in_flight.get("instance")}
            assert saved.object_name in allowed_names, (round_, address, saved, known)
            assert saved.object_instance in allowed_instances, (round_, address, saved, known)
            # Whatever landed is what the next round starts from.
            known.name, known.instance, known.in_flight = saved.object_name, saved.object_instance, {}
    assert sum(1 for known in writes.values() if known.instance is not None) == len(NODES)
