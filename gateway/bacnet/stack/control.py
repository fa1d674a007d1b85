"""DeviceCommunicationControl, which every device of the gateway executes.

Enable, disable or disable-initiation, for a duration in minutes (none = until enabled again or
the gateway restarts), with a password the application checks (`check_password`: refused unless
a subclass accepts it). bacpypes3's own handler fails: it sets the state on an `smap` its
applications lack, as an enumeration its access point never equals.

Where it is enforced: bacpypes3's `ApplicationServiceAccessPoint.confirmation` (working with
`fixes.DccOnUndecodedPdu`), the first place every APDU for this device passes, before a server
transaction exists or the service is decoded, reads the access point's state. While disabled it
lets through DeviceCommunicationControl and ReinitializeDevice only (and Who-Is/Who-Has, whose
I-Am/I-Have `sap_indication` then drops, as it drops everything the device would initiate; with
initiation disabled, everything but I-Am). A fast path for requests must sit behind that point,
or ask `answers_requests()`. COV notifications stop in both states (`cov.CovService`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from bacpypes3.apdu import DeviceCommunicationControlRequest, SimpleAckPDU
from bacpypes3.app import Application
from bacpypes3.errors import ExecutionError

__all__ = ["CommunicationControl"]

log = structlog.get_logger(__name__)

ENABLED, DISABLED = "enable", "disable"


class CommunicationControl(Application):
    _dcc_end: asyncio.TimerHandle | None = None

    def check_password(self, given: Any) -> None:
        """Raise password-failure unless `given` is the device's password."""
        raise ExecutionError("security", "passwordFailure")

    def communicating(self) -> bool:
        """Whether the device answers requests and initiates messages (DCC enabled)."""
        return bool(self.asap.dccEnableDisable == ENABLED)

    def answers_requests(self) -> bool:
        """Whether the device answers requests (DCC enabled, or initiation only disabled)."""
        return bool(self.asap.dccEnableDisable != DISABLED)

    async def do_DeviceCommunicationControlRequest(self, apdu: DeviceCommunicationControlRequest) -> None:
        self.check_password(apdu.password)
        self._communicate(apdu.enableDisable.attr)
        if not self.communicating() and apdu.timeDuration:
            self._dcc_end = asyncio.get_running_loop().call_later(apdu.timeDuration * 60, self._communicate, ENABLED)
        await self.response(SimpleAckPDU(context=apdu))
        log.warning(
            "device communication control",
            device=str(self.device_object.objectIdentifier),
            state=apdu.enableDisable.attr,
            minutes=apdu.timeDuration,
            source=str(apdu.pduSource),
        )

    def _communicate(self, state: str) -> None:
        if self._dcc_end is not None:
            self._dcc_end.cancel()
            self._dcc_end = None
        self.asap.dccEnableDisable = state

    def close(self) -> None:
        self._communicate(ENABLED)  # no end of a duration left pending
        super().close()
