"""Meter nodes: discovery, the poll plan and loop, node health, the cache, events and writes.

Faces use the node layer through :class:`~gateway.nodes.api.NodeAPI` (read ``nodes`` as read-only views, await
``write``, ``write_value``, ``passthrough``; failures are :mod:`gateway.nodes.errors`) and
subscribe to the node events (:mod:`gateway.nodes.events`) on the :class:`~gateway.hub.EventHub`;
they never touch the bus.
"""
