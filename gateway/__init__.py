"""BCPM gateway: Schneider/Veris PowerLogic BCPM meters on RS-485, republished as BACnet/IP, SNMP and Modbus TCP.

Data flows one way, meter -> bus -> node cache -> faces, and writes come back the same road.
Each package imports only those listed above it (checked by import-linter, see pyproject.toml):

    gateway.pointmap    what every register means (data), and the codes the reset registers take
    gateway.hub         the event hub, neutral: events from any thread fanned out to the faces' loop
    gateway.findings    what one face finds that others tell (the BACnet doctor's network findings)
    gateway.bus         the one owner of the serial line, over a transport (`RtuTransport`, or one in memory)
    gateway.nodes       the node service and its parts: the line, the node registry, discovery and
                        rescans, polling, node health, the cache, node events, validated writes;
                        `api` for the faces
    gateway.state       the state file and the identity store (profiles, device names and IDs, SNMP engine)
    gateway.bacnet      the faces, each independent of the others and of the bus:
    gateway.snmp            BACnet/IP router and devices, SNMP agent (v2c, v3) and notifications,
    gateway.modbus_tcp      Modbus TCP server for several masters,
    gateway.web             HTTPS status pages, JSON API and /metrics
    gateway.app         builds and runs everything from the configuration
    gateway.demo        the demo: simulated boards and a gateway in one process
    gateway.cli         the command line

Beside them: gateway.modbus (the Modbus unit range, function and exception codes, for every layer), gateway.sim (a BCPM
simulator behind a virtual serial line or in memory, sharing only the point map and the Modbus
constants), gateway.config (TOML -> typed settings), gateway.errors, gateway.logging (with the
counts of what peers can cause as often as they like), gateway.ratelimit (token buckets by
source), gateway.state_saves (saves that many writes share), gateway.threads, gateway.systemd.
"""

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it)
