"""One device's bacpypes3 application, mended and typed for the gateway.

    app = NodeApplication.from_object_list([device, port])   # a `StackApplication` subclass
    app.cov_subscriptions(); app.take_up(...)                # COV (`cov.py`)
    app.communicating(); app.answers_requests()              # DeviceCommunicationControl (`control.py`)
    app.object_identifiers()                                 # its Object_List

bacpypes3 serves one device per application; the gateway runs one per device (the router's and
one per meter node). Each carries every workaround of `fixes.py` that an application needs, its
COV subscriptions as the gateway reads and bounds them, and DeviceCommunicationControl; a port
that brings its own link layer is bound as bacpypes3 binds its stock ones (`ports.py`). The
gateway's applications subclass it and fill in the policy: the COV caps
(`refuses_subscription`), who hears of a subscription's change (`subscriptions_changed`), the
password (`check_password`) and whether writes are refused (`refuses_writes`).

Not executed, so not listed in Protocol_Services_Supported: ReadRange (no object of the gateway
has a list it could read) and the COV notifications (its devices subscribe to nobody).
"""

from __future__ import annotations

from typing import Any

from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet.stack.control import CommunicationControl
from gateway.bacnet.stack.cov import CovService
from gateway.bacnet.stack.fixes import (
    CancelOnlyWhatExists,
    CovConfirmationGuard,
    DccEnableDisableRequired,
    IndefiniteCovLifetime,
    UnconfirmedServicesSupported,
    WildcardDeviceInstance,
    WriteDecodingErrors,
    WritePropertyMultipleErrors,
)
from gateway.bacnet.stack.ports import LinkedPort, bind_port

__all__ = ["StackApplication"]


class StackApplication(
    CovService,
    DccEnableDisableRequired,
    CommunicationControl,
    IndefiniteCovLifetime,
    CancelOnlyWhatExists,
    CovConfirmationGuard,
    WildcardDeviceInstance,
    UnconfirmedServicesSupported,
    WriteDecodingErrors,
    WritePropertyMultipleErrors,
):
    do_ReadRangeRequest = None
    do_ConfirmedCOVNotificationRequest = None
    do_UnconfirmedCOVNotificationRequest = None

    def refuses_writes(self) -> bool:
        """Whether every write to the device's objects is refused."""
        return False

    def object_identifiers(self) -> list[ObjectIdentifier]:
        """Its Object_List: every object of the device."""
        return list(self.objectIdentifier)

    def add_object(self, obj: Any) -> None:
        if isinstance(obj, LinkedPort) and obj.link_layer() is not None:
            bind_port(self, obj)  # bacpypes3 would build its stock link layer for the port
        else:
            super().add_object(obj)
