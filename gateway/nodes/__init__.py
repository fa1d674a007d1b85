"""Meter nodes: discovery, the poll plan and loop, node health, the cache, events and writes.

Faces use :class:`~gateway.nodes.service.NodeService` (read ``nodes``, call ``write``) and
subscribe to :class:`~gateway.nodes.events.EventHub`; they never touch the bus.
"""
