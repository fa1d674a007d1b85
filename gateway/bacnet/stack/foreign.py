"""The gateway as a foreign device: registered with a remote BBMD, and kept registered.

    device = ForeignDevice(IPv4Address("10.0.1.5/24:47808"), bbmd=("10.0.9.1", 47808), ttl=300)
    await device.keep_registered()   # until cancelled; device.registration says how it stands

The registration is renewed at half the TTL, so it never depends on the BBMD's grace period.
A refused or unanswered registration is retried every `RETRY_INTERVAL` (or TTL/2 if shorter)
for as long as the gateway runs. Each change of state is logged; an unanswered renewal counts
as "no answer" only once the last accepted registration has run out.

While registered, the gateway's broadcasts (I-Am, I-Am-Router-To-Network, ...) also go to the
BBMD as Distribute-Broadcast-To-Network, which hands them to its subnet, its peers and its other
foreign devices; the BBMD forwards the network's broadcasts here as Forwarded-NPDUs. The
gateway's own subnet keeps hearing it as before.

This is bacpypes3's normal link layer plus that registration, not its `BIPForeign`: that one
renews only when the TTL has already run out, ignores every answer after one refusal, and stops
for good once a registration has expired, so a BBMD that was away for TTL + 30 s would never see
the gateway again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from enum import Enum

import structlog
from bacpypes3.ipv4.bvll import LPDU, DistributeBroadcastToNetwork, RegisterForeignDevice, Result
from bacpypes3.ipv4.link import NormalLinkLayer
from bacpypes3.pdu import PDU, Address, IPv4Address

from gateway.bacnet.stack.bbmd import REGISTER_FOREIGN_DEVICE_NAK

__all__ = ["ANSWER_TIMEOUT", "RETRY_INTERVAL", "ForeignDevice", "Registration", "RegistrationState"]

log = structlog.get_logger(__name__)

ANSWER_TIMEOUT = 3.0  # seconds the BBMD gets to answer a registration
RETRY_INTERVAL = 10.0  # seconds between attempts while not registered
SUCCESS = 0
_REGISTRATION_RESULTS = (SUCCESS, REGISTER_FOREIGN_DEVICE_NAK)


class RegistrationState(Enum):
    REGISTERING = "registering"  # the first attempt is under way
    REGISTERED = "registered"
    REFUSED = "refused"  # the BBMD answered with a NAK
    NO_ANSWER = "no answer"  # and no registration of ours is still running at the BBMD


@dataclass(frozen=True, slots=True)
class Registration:
    """Where the registration stands; `result` is the BBMD's last BVLC result code, if any."""

    state: RegistrationState
    bbmd: str  # "ip:port"
    ttl: int
    result: int | None = None


class ForeignDevice(NormalLinkLayer):
    def __init__(self, address: IPv4Address, bbmd: tuple[str, int], ttl: int) -> None:
        super().__init__(address)
        host, port = bbmd
        self.bbmd = IPv4Address(f"{host}:{port}")
        self.ttl = ttl
        self.registration = Registration(RegistrationState.REGISTERING, f"{host}:{port}", ttl)
        self._answer: asyncio.Future[int] | None = None
        self._registered_until = 0.0  # loop time the BBMD keeps our last accepted registration until

    async def keep_registered(self) -> None:
        """Register, renew at half the TTL, retry sooner when refused or unanswered; until cancelled."""
        log.info("foreign device registering", bbmd=self.registration.bbmd, ttl=self.ttl)
        while True:
            result = await self._register()
            self._record(result)
            await asyncio.sleep(self.ttl / 2 if result == SUCCESS else min(RETRY_INTERVAL, self.ttl / 2))

    async def _register(self) -> int | None:
        """The BBMD's result code, None when it does not answer in time."""
        self._answer = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await self.request(RegisterForeignDevice(self.ttl, destination=self.bbmd))
                return await self._answer
        except TimeoutError:
            return None
        finally:
            self._answer = None

    def _record(self, result: int | None) -> None:
        now = asyncio.get_running_loop().time()
        if result == SUCCESS:
            self._registered_until = now + self.ttl
            self._set(RegistrationState.REGISTERED, result)
        elif result is not None:
            self._set(RegistrationState.REFUSED, result)
        elif now >= self._registered_until:
            self._set(RegistrationState.NO_ANSWER, None)
        else:  # the last registration still runs at the BBMD
            log.debug("foreign device renewal unanswered", bbmd=self.registration.bbmd)

    def _set(self, state: RegistrationState, result: int | None) -> None:
        changed = state is not self.registration.state
        self.registration = Registration(state, self.registration.bbmd, self.ttl, result)
        if not changed:
            return
        detail = {"bbmd": self.registration.bbmd, "ttl": self.ttl, "state": state.value}
        if state is RegistrationState.REGISTERED:
            log.info("foreign device registered", **detail)
        elif state is RegistrationState.REFUSED:
            log.warning("foreign device registration refused", result=f"0x{result:04X}", **detail)
        else:
            log.warning("foreign device not registered: the bbmd does not answer", **detail)

    async def indication(self, pdu: PDU) -> None:
        await super().indication(pdu)
        registered = self.registration.state is RegistrationState.REGISTERED
        if registered and pdu.pduDestination.addrType == Address.localBroadcastAddr:
            await self.request(DistributeBroadcastToNetwork(pdu, destination=self.bbmd, user_data=pdu.pduUserData))

    async def confirmation(self, lpdu: LPDU) -> None:
        if isinstance(lpdu, Result):
            # Registering is the only BVLL request this gateway makes; any other result is noise.
            answer = self._answer
            from_bbmd = lpdu.pduSource == self.bbmd and lpdu.bvlciResultCode in _REGISTRATION_RESULTS
            if answer is not None and not answer.done() and from_bbmd:
                answer.set_result(lpdu.bvlciResultCode)
            return
        await super().confirmation(lpdu)
