"""The gateway as a foreign device of a remote BBMD, on loopback: it registers, renews, comes back
after a refusal or a silent BBMD, and reports how it stands."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import pytest
import structlog
from bacpypes3.ipv4.link import BBMDLinkLayer
from bacpypes3.pdu import IPv4Address

from gateway.app import Gateway
from gateway.bacnet.stack.bbmd import REGISTER_FOREIGN_DEVICE_NAK, Bbmd
from gateway.bacnet.stack.foreign import ForeignDevice, RegistrationState
from tests.bacnet.client import free_udp_port
from tests.bacnet.conftest import bacnet_config, bacnet_face, serving
from tests.bacnet.peer import PEER_INSTANCE, peer_bbmd
from tests.support import eventually

REGISTERED, REFUSED, NO_ANSWER = RegistrationState.REGISTERED, RegistrationState.REFUSED, RegistrationState.NO_ANSWER


class RecordingBbmd(BBMDLinkLayer):
    """bacpypes3's own BBMD link layer on loopback, keeping every registration it accepts."""

    def __init__(self, port: int) -> None:
        super().__init__(IPv4Address(f"127.0.0.1/8:{port}"))
        self.add_peer(IPv4Address(f"127.0.0.1:{port}"))
        self.registrations: list[tuple[IPv4Address, int]] = []

    def register_foreign_device(self, addr: IPv4Address, ttl: int) -> int:
        self.registrations.append((addr, ttl))
        return super().register_foreign_device(addr, ttl)


@pytest.fixture
def start_foreign(make_line, start_gateway, tmp_path) -> Callable[..., object]:
    async def start(bbmd_port: int, ttl: int) -> tuple[Gateway, ForeignDevice]:
        config = bacnet_config(make_line(1), tmp_path, foreign_bbmd=f"127.0.0.1:{bbmd_port}", foreign_ttl=ttl)
        gateway = await serving(await start_gateway(config))
        network = bacnet_face(gateway).network
        assert network is not None and network.foreign is not None
        return gateway, network.foreign

    return start


async def test_the_gateway_registers_with_the_bbmd_renews_and_says_it_is_registered(start_foreign) -> None:
    port = free_udp_port()
    with closing(RecordingBbmd(port)) as bbmd:
        with structlog.testing.capture_logs() as logs:
            gateway, foreign = await start_foreign(port, ttl=2)
            await eventually(lambda: len(bbmd.registrations) >= 3, 20, "three registrations")
        own = IPv4Address(f"127.0.0.1:{gateway.config.bacnet.port}")
        assert set(bbmd.registrations) == {(own, 2)}
        assert [entry.fdAddress for entry in bbmd.bbmdFDT] == [own]
        assert foreign.registration.state is REGISTERED
        assert (foreign.registration.bbmd, foreign.registration.ttl, foreign.registration.result) == (
            f"127.0.0.1:{port}",
            2,
            0,
        )
        # One line for the change of state, not one per renewal.
        assert [entry["event"] for entry in logs if entry["event"].startswith("foreign device")] == [
            "foreign device registering",
            "foreign device registered",
        ]


async def test_a_broadcast_who_is_through_the_bbmd_finds_the_router_and_every_node(start_foreign, make_client) -> None:
    port = free_udp_port()
    with closing(peer_bbmd(f"127.0.0.1/8:{port}", [f"127.0.0.1/32:{port}"])):
        _, foreign = await start_foreign(port, ttl=60)
        await eventually(lambda: foreign.registration.state is REGISTERED, 10, "the registration")
        # Another foreign device of the same BBMD: its Who-Is goes to the BBMD, which forwards it.
        elsewhere = make_client(port, foreign_ttl=60)
        await eventually(lambda: elsewhere.link_layer.bbmdRegistrationStatus == 0, 10, "the client's registration")
        found = await elsewhere.app.who_is(timeout=2)
    assert sorted(i_am.iAmDeviceIdentifier[1] for i_am in found) == [50000, 50001, 50002, PEER_INSTANCE]


async def test_a_refused_registration_is_reported_and_retried_until_accepted(start_foreign) -> None:
    port = free_udp_port()
    occupant = IPv4Address("127.0.0.1:9")
    with closing(Bbmd(IPv4Address(f"127.0.0.1/8:{port}"), (), max_foreign_devices=1)) as bbmd:
        bbmd.register_foreign_device(occupant, 3600)
        _, foreign = await start_foreign(port, ttl=4)
        await eventually(lambda: foreign.registration.state is REFUSED, 20, "the refusal")
        assert foreign.registration.result == REGISTER_FOREIGN_DEVICE_NAK
        bbmd.delete_foreign_device_table_entry(occupant)
        await eventually(lambda: foreign.registration.state is REGISTERED, 20, "the registration")


async def test_a_bbmd_that_does_not_answer_is_reported_and_found_when_it_comes(start_foreign) -> None:
    port = free_udp_port()
    _, foreign = await start_foreign(port, ttl=4)
    await eventually(lambda: foreign.registration.state is NO_ANSWER, 20, "no answer")
    with closing(RecordingBbmd(port)):
        await eventually(lambda: foreign.registration.state is REGISTERED, 20, "the registration")


async def test_bacpypes3s_own_foreign_device_still_ignores_an_acceptance_after_a_refusal(make_client) -> None:
    """Why foreign.py does not use bacpypes3's BIPForeign: when this fails, upstream fixed it."""
    port = free_udp_port()
    occupant = IPv4Address("127.0.0.1:9")
    with closing(Bbmd(IPv4Address(f"127.0.0.1/8:{port}"), (), max_foreign_devices=1)) as bbmd:
        bbmd.register_foreign_device(occupant, 3600)
        stock = make_client(port, foreign_ttl=2)  # bacpypes3 retries every 2 s
        await eventually(lambda: stock.link_layer.bbmdRegistrationStatus == REGISTER_FOREIGN_DEVICE_NAK, 10, "NAK")
        bbmd.delete_foreign_device_table_entry(occupant)
        stock_address = IPv4Address(f"127.0.0.1:{stock.port}")
        await eventually(lambda: any(e.fdAddress == stock_address for e in bbmd.bbmdFDT), 20, "the acceptance")
        await stock.read_fdt()  # a round trip on the same socket: the acceptance has arrived before its answer
        assert stock.link_layer.bbmdRegistrationStatus == REGISTER_FOREIGN_DEVICE_NAK
