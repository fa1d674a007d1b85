"""The COV subscription caps of the whole gateway.

    limits = CovLimits(total=1024, per_client=256, indefinite=128)
    app.cov_limits = limits; limits.apps.append(app)     # every device's application counts
    limits.refuses(client, indefinite=True, renewed=None)

At most `bacnet.max_cov_subscriptions` over all devices, `bacnet.max_cov_per_client` for one
subscriber, and `bacnet.max_cov_indefinite` indefinite ones (which only a cancellation ends) over
all devices. A subscriber is its IP address, whatever the port (or routed path) it subscribes
from. A renewal is refused only when it would make a timed subscription indefinite beyond that cap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bacpypes3.pdu import Address

from gateway.bacnet.shares import source_host
from gateway.bacnet.stack import StackApplication, Subscribed

__all__ = ["BoundedCov", "CovLimits"]


@dataclass
class CovLimits:
    """The caps, and the applications they count over."""

    total: int
    per_client: int
    indefinite: int
    apps: list[StackApplication] = field(default_factory=list)

    def refuses(self, client: Address, indefinite: bool, renewed: Subscribed | None) -> bool:
        subscriptions = [cov for app in self.apps for cov in app.cov_subscriptions()]
        host = source_host(client)
        if renewed is None and (
            len(subscriptions) >= self.total
            or sum(1 for cov in subscriptions if source_host(cov.subscriber) == host) >= self.per_client
        ):
            return True
        return (
            indefinite
            and (renewed is None or bool(renewed.lifetime))
            and sum(1 for cov in subscriptions if not cov.lifetime) >= self.indefinite
        )


class BoundedCov(StackApplication):
    """An application whose subscriptions count against the gateway's caps, and which tells the
    keeper of the subscriptions (`subscriptions.py`) of each change."""

    cov_limits: CovLimits
    keep_subscriptions: Callable[[], None] | None = None

    def refuses_subscription(self, subscriber: Address, indefinite: bool, renewed: Subscribed | None) -> bool:
        return self.cov_limits.refuses(subscriber, indefinite, renewed)

    def subscriptions_changed(self) -> None:
        if self.keep_subscriptions is not None:
            self.keep_subscriptions()
