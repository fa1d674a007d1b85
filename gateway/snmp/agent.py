"""The SNMP face: an agent on the main event loop, serving the node cache, sending notifications.

SNMPv2c (unless snmp.v2c is false): the read community reads everything served; the write
community (none: SET is off) also writes the writable objects under the enterprise tree; the trap
community only signs traps. A request with any other community gets no answer and counts in
snmpInBadCommunityNames.

SNMPv3 (snmp.users): each user reads everything served, and a read-write user also writes what
the write community writes, at the user's security level (gateway.snmp.usm). The engine's ID and
boots (gateway.snmp.engine) are saved in the state file before the agent answers.
"""

from __future__ import annotations

import asyncio
import itertools
import socket

import structlog
from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.entity.rfc3413 import cmdrsp, context

from gateway.config import SnmpSettings
from gateway.errors import ListenError
from gateway.findings import NetworkFinding
from gateway.heap import return_free_heap
from gateway.hub import EventHub, Subscription
from gateway.nodes.api import NodeAPI
from gateway.nodes.events import AlarmChanged, NodeAdded, NodeOffline, NodeOnline, NodeRemoved
from gateway.snmp.controller import NO_VIEW, READ_VIEW, BulkLimits, CacheController, Write, Writer
from gateway.snmp.engine import MAX_BOOTS, EngineClock, max_message_size, next_start, snmp_engine
from gateway.snmp.fast import FastResponder
from gateway.snmp.gate import Gate
from gateway.snmp.index import OidIndex
from gateway.snmp.notifications import COLD_START, Notifier
from gateway.snmp.placement import default_layout
from gateway.snmp.readers import FastCounts, layout_entries, standard_entries, usm_counter
from gateway.snmp.responders import BulkResponder, DeferredSetResponder, max_varbind_bytes
from gateway.snmp.transport import GuardedUdpTransport
from gateway.snmp.tree import BASE, Layout
from gateway.snmp.usm import Usm, UsmUser, register
from gateway.state import IdentityStore, SavedEngine

log = structlog.get_logger(__name__)

# The security names of the read and the write community (VACM principals).
READER = "bcpm-read"
WRITER = "bcpm-write"


class SnmpFace:
    def __init__(self, settings: SnmpSettings, nodes: NodeAPI, hub: EventHub, identities: IdentityStore) -> None:
        self.settings = settings
        self.nodes = nodes
        self.hub = hub
        self.identities = identities
        self.engine: SavedEngine | None = None  # this start's engine ID and boots, once saved
        self.listening = asyncio.Event()  # set once the socket is bound
        self.controller: CacheController | None = None  # set once the agent answers
        self.transport: GuardedUdpTransport | None = None  # likewise
        self.notifier: Notifier | None = None  # likewise
        self.snmp_engine: SnmpEngine | None = None  # likewise: pysnmp's, whose access control is the VACM's

    async def run(self) -> None:
        configured = self.settings.engine_id
        # Saved before the socket is bound: no answer ever goes out with a boots count used before.
        saved = self.identities.update(lambda state: state.with_snmp_engine(next_start(state.snmp_engine, configured)))
        assert saved.snmp_engine is not None
        self.engine = saved.snmp_engine
        clock = EngineClock(self.engine.boots)
        sock = self._bind()
        # Subscribed before anything else waits, so that no event between start and serving is lost.
        events = self.hub.subscribe(AlarmChanged, NodeOnline, NodeOffline, NetworkFinding)
        added = self.hub.subscribe(NodeAdded, NodeRemoved)
        try:
            # Building the agent takes a few hundred ms of CPU: not while discovery probes with
            # short timeouts on the bus thread. Requests meanwhile wait in the socket.
            await self.nodes.wait_ready()
            engine = self.snmp_engine = snmp_engine(self.engine.id, clock)
            try:
                await self._serve(engine, clock, sock, events, added)
            finally:
                engine.close_dispatcher()
        finally:
            events.close()
            added.close()
            sock.close()

    async def _serve(
        self, engine: SnmpEngine, clock: EngineClock, sock: socket.socket, events: Subscription, added: Subscription
    ) -> None:
        layout = default_layout()
        settings = self.settings
        transport = self.transport = GuardedUdpTransport(Gate(settings.allow, settings.rate_limit))
        config.add_transport(engine, udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))
        counts = FastCounts()
        nodes, index = self._index(layout, engine, counts)
        writers = (self._communities(engine) if settings.v2c else frozenset()) | self._users(engine)
        controller = self.controller = CacheController(index, writers)
        engine_id = bytes(engine.snmpEngineID)
        users = [UsmUser.of(user, engine_id) for user in settings.users]
        usm = Usm(engine_id, clock, users, counts, usm_counter(engine, counts), max_message_size(engine))
        limits = BulkLimits(
            self.settings.max_response_varbinds, self.settings.bulk_amplification, max_varbind_bytes(engine)
        )
        snmp_context = context.SnmpContext(engine)
        snmp_context.unregister_context_name(b"")
        snmp_context.register_context_name(b"", self.controller)
        notifier = self.notifier = Notifier(engine, self.settings, layout, self.nodes, self.hub)
        async with asyncio.TaskGroup() as group:
            for responder in (cmdrsp.GetCommandResponder, cmdrsp.NextCommandResponder):
                responder(engine, snmp_context)
            BulkResponder(engine, snmp_context, limits)
            DeferredSetResponder(engine, snmp_context, self._write, group.create_task)
            log.info(
                "snmp agent serving",
                address=sock.getsockname()[0],
                port=sock.getsockname()[1],
                instances=len(index),
                nodes=nodes,
                versions=settings.versions,
                engine_id=engine_id.hex(),
                engine_boots=clock.boots,
                receivers=notifier.receivers,
            )
            if clock.boots == MAX_BOOTS:
                # RFC 3414 2.2.2: every SNMPv3 request is outside the time window until then
                log.error("snmp engine boots at their maximum: snmpv3 fails until snmp.engine_id changes")
            # pysnmp compiles its MIB modules from source at every start (it looks for their
            # bytecode where Python 2 kept it), and each once more through runpy: some 2 MB left
            # free in the heap, for good
            return_free_heap()
            readers = self._readers() if settings.v2c else None
            transport.fast = FastResponder(engine, controller, readers, usm, limits, counts)
            notifier.send(COLD_START)
            group.create_task(notifier.run(events))
            group.create_task(self._follow_new_nodes(added, layout, engine, controller, counts))

    async def _follow_new_nodes(
        self, added: Subscription, layout: Layout, engine: SnmpEngine, controller: CacheController, counts: FastCounts
    ) -> None:
        """A meter found later gets its rows, a forgotten one loses them: the index (both paths read
        the controller's) is built again from the nodes known now, and swapped in."""
        async for _ in added:
            nodes, controller.index = self._index(layout, engine, counts)
            log.info("snmp serving the nodes known now", nodes=nodes, instances=len(controller.index))

    def _index(self, layout: Layout, engine: SnmpEngine, counts: FastCounts) -> tuple[list[int], OidIndex]:
        """The nodes known now, and the index of their rows and the agent's own objects."""
        nodes = dict(self.nodes.nodes)
        entries = itertools.chain(
            layout_entries(layout, nodes, self.nodes.circuit_names), standard_entries(engine, self.settings, counts)
        )
        return sorted(nodes), OidIndex(entries)

    def _bind(self) -> socket.socket:
        """Bind here, so that a taken or unknown address fails the face now, with its reason."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.settings.address, self.settings.port))
        except OSError as error:
            sock.close()
            raise ListenError(
                f"SNMP cannot listen on {self.settings.address}:{self.settings.port} "
                f"(snmp.address, snmp.port): {error.strerror}"
            ) from error
        sock.setblocking(False)
        self.listening.set()
        return sock

    def _communities(self, engine: SnmpEngine) -> frozenset[Writer]:
        """Register the communities; those that may write."""
        read, write = self.settings.read_community, self.settings.write_community
        if write != read:  # one community that is both is the writer
            config.add_v1_system(engine, READER, read)
            config.add_vacm_user(engine, 2, READER, "noAuthNoPriv", readSubTree=READ_VIEW, writeSubTree=NO_VIEW)
        if write is None:
            return frozenset()
        config.add_v1_system(engine, WRITER, write)
        config.add_vacm_user(engine, 2, WRITER, "noAuthNoPriv", readSubTree=READ_VIEW, writeSubTree=BASE)
        return frozenset({(2, WRITER)})

    def _users(self, engine: SnmpEngine) -> frozenset[Writer]:
        """Register the SNMPv3 users (USM and VACM); those that may write."""
        for user in self.settings.users:
            register(engine, user)
            write = BASE if user.access == "read-write" else NO_VIEW
            config.add_vacm_user(
                engine, 3, user.name, user.level, readSubTree=READ_VIEW, writeSubTree=write, notifySubTree=READ_VIEW
            )
        return frozenset((3, user.name) for user in self.settings.users if user.access == "read-write")

    @property
    def counts(self) -> dict[str, int]:
        """Notifications held back and informs so far (the dropped datagrams are PeerEvents)."""
        return {} if self.notifier is None else self.notifier.counts

    def _readers(self) -> list[str]:
        """The communities that read (the whole tree: see READ_VIEW)."""
        write = self.settings.write_community
        return [self.settings.read_community, *([] if write is None else [write])]

    async def _write(self, write: Write) -> None:
        await self.nodes.write(write.address, write.register, [write.raw])
