"""The broadcast distribution table file, `bdt.ini`, in the BCPME's format. Text in, entries out.

    table = parse_bdt(text, own=(IPv4Address("10.0.1.5"), 47808))
    [str(entry) for entry in table]   # ["10.0.1.5:47808 mask 255.255.255.255", ...]
    table = load_bdt(config.bacnet)   # the configured file, this gateway's own line required

One `ip,port,mask` line per BBMD of the BACnet/IP network, this gateway included, e.g.
`10.0.1.5,47808,255.255.255.255`; a line starting with `//` is a comment. Blank lines, spaces
around the fields and Windows line ends are tolerated. The mask says how a peer gets the
broadcasts forwarded to it: 255.255.255.255 sends them to the peer itself, which re-broadcasts
them on its subnet (two-hop); any other subnet mask sends them as a directed broadcast to the
peer's subnet (the IP routers in between must forward directed broadcasts).

Every bad line is reported with its number and why, all at once, in one `BdtError`. The
gateway's own line missing is an error too, not a warning with a made-up line: whether the
gateway re-broadcasts what its peers forward depends on it, and only the integrator knows the
mask the peers use for it (`bdt.ini.example` says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from pathlib import Path

from gateway.config import BacnetSettings
from gateway.errors import GatewayError

__all__ = ["BdtEntry", "BdtError", "load_bdt", "parse_bdt", "read_bdt"]

COMMENT = "//"
_FIELDS = "ip,port,mask"


@dataclass(frozen=True, slots=True)
class BdtEntry:
    """One BBMD of the table: where it listens and the mask its broadcasts are forwarded with."""

    address: IPv4Address
    port: int
    mask: IPv4Address

    def __str__(self) -> str:
        return f"{self.address}:{self.port} mask {self.mask}"


class BdtError(GatewayError):
    """A bdt.ini the gateway will not use: the file and every problem found, one per line."""

    def __init__(self, heading: str, problems: tuple[str, ...] = ()) -> None:
        self.heading = heading
        self.problems = problems
        super().__init__("\n".join((heading, *(f"  {problem}" for problem in problems))))


class _BadField(ValueError):
    """A field of a line that is not what it should be; the message says why."""


def load_bdt(settings: BacnetSettings) -> tuple[BdtEntry, ...]:
    """The table in `settings.bdt_file`, which must list this gateway (`address` and `port`)."""
    return read_bdt(settings.bdt_file, (settings.address.ip, settings.port))


def read_bdt(path: Path, own: tuple[IPv4Address, int]) -> tuple[BdtEntry, ...]:
    """The table in the file at `path`, which must list `own` (this gateway's address and port)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM from a Windows editor is not a field
    except OSError as error:
        raise BdtError(f"bdt file {path}: cannot read it: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise BdtError(f"bdt file {path} is not UTF-8 text: {error}") from None
    try:
        return parse_bdt(text, own)
    except BdtError as error:
        raise BdtError(f"bdt file {path}:", error.problems) from None


def parse_bdt(text: str, own: tuple[IPv4Address, int]) -> tuple[BdtEntry, ...]:
    """The table in bdt.ini text; `own` (this gateway's address and port) must be on a line."""
    entries: list[BdtEntry] = []
    lines_of: dict[tuple[IPv4Address, int], int] = {}
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.strip()
        if not content or content.startswith(COMMENT):
            continue
        try:
            entry = _entry(content)
        except _BadField as bad:
            problems.append(f"line {number}: {content!r}: {bad}")
            continue
        where = (entry.address, entry.port)
        if where in lines_of:
            problems.append(f"line {number}: {entry.address}:{entry.port} is already on line {lines_of[where]}")
            continue
        lines_of[where] = number
        entries.append(entry)
    if own not in lines_of:
        address, port = own
        problems.append(
            f"no line for this gateway ({address}:{port}, from bacnet.address and bacnet.port): "
            "list every BBMD of the network, this one included"
        )
    if problems:
        raise BdtError("bdt.ini:", tuple(problems))
    return tuple(entries)


def _entry(content: str) -> BdtEntry:
    fields = [field.strip() for field in content.split(",")]
    if len(fields) != 3:
        raise _BadField(f"expected {_FIELDS} (3 fields separated by commas), found {len(fields)} field(s)")
    address, port, mask = fields
    return BdtEntry(_unicast(address), _port(port), _mask(mask))


def _unicast(text: str) -> IPv4Address:
    try:
        address = IPv4Address(text)
    except AddressValueError:
        raise _BadField(f"the ip {text!r} is not an IPv4 address like 192.168.1.24") from None
    if address.is_unspecified or address.is_multicast or address.is_reserved:  # reserved: 240/4, broadcast
        raise _BadField(f"the ip {text} is not the address of one host")
    return address


def _port(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _BadField(f"the port {text!r} is not a number 1-65535 (BACnet/IP uses 47808)")
    return int(text)


def _mask(text: str) -> IPv4Address:
    try:
        mask = int(IPv4Address(text))
    except AddressValueError:
        mask = 0
    hosts = 0xFFFFFFFF ^ mask
    # Ones then zeros (peers decode it by counting its bits); 0.0.0.0 would mean the whole internet.
    if mask == 0 or hosts & (hosts + 1):
        raise _BadField(
            f"the mask {text!r} is not a subnet mask: 255.255.255.255 forwards to the BBMD itself "
            "(two-hop), a subnet mask like 255.255.255.0 forwards as a directed broadcast"
        )
    return IPv4Address(mask)
