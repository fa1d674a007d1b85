"""Gateway settings: one TOML file in, typed, validated, frozen dataclasses out.

    config = load_config(Path("/etc/bcpm-gateway/gateway.toml"))
    config.serial.baudrate        # 19200
    config.serial.scan            # (1, 2, ..., 247)
    config.snmp.write_community   # None: SNMP SET is off

Each key is declared once, on its section's dataclass, with its default and the rule that
checks and converts the raw TOML value: ``baudrate: int = _key(19200, _choice(9600, ...))``.
`parse_config` walks those declarations, collects every problem (unknown keys included) and
raises one `ConfigError` listing them all, so the rest of the code never sees raw TOML.
Non-fatal notices (such as the BACnet network fallback) end up in `Config.warnings` for the
caller to log.
"""

from __future__ import annotations

import copy
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from ipaddress import AddressValueError, IPv4Address, IPv4Interface, IPv4Network, NetmaskValueError
from pathlib import Path
from typing import Any, Literal

from gateway.errors import ConfigError, ConfigProblem, show_value
from gateway.modbus import UNIT_ADDRESSES

__all__ = [
    "BAUDRATES",
    "FALLBACK_NETWORK",
    "MAX_DEVICE_ID_OFFSET",
    "MAX_DEVICE_INSTANCE",
    "VALID_NETWORKS",
    "BacnetSettings",
    "Config",
    "GatewaySettings",
    "LogSettings",
    "ModbusTcpSettings",
    "SerialSettings",
    "SnmpSettings",
    "SnmpUser",
    "UpstreamSettings",
    "WebSettings",
    "SECTIONS",
    "SETTABLE",
    "SETTINGS_FILE",
    "UPLOADED_BDT",
    "allowed_values",
    "default_config",
    "load_config",
    "merge_config",
    "read_settings",
    "settings_file",
    "parse_config",
    "raw_settings",
]

# Limits shared with the faces and the state file (AV1/AV2 writes obey the same ranges).
MAX_DEVICE_INSTANCE = 4194303
MAX_DEVICE_ID_OFFSET = MAX_DEVICE_INSTANCE - UNIT_ADDRESSES[-1]
VALID_NETWORKS = range(1, 65535)
BAUDRATES = (9600, 19200, 38400, 57600, 115200)
# The upstream port's rates: MS/TP's (ASHRAE 135 clause 9.2: 9600-76800) and Modbus RTU's.
MSTP_BAUDRATES = (9600, 19200, 38400, 76800)
UPSTREAM_MODES = ("off", "mstp", "modbus_rtu")
MSTP_MACS = range(128)  # master nodes; 128-254 are slaves only, 255 is broadcast
# What the BCPME does with a virtual network number outside VALID_NETWORKS.
FALLBACK_NETWORK = 5

_Rule = Callable[[object], Any]
_RULE = "rule"


class _Refused(Exception):
    """A raw value broke its rule. `items` holds per-element problems of a list (keys "[i]")."""

    def __init__(self, allowed: str, items: tuple[ConfigProblem, ...] = ()) -> None:
        super().__init__(allowed)
        self.allowed = allowed
        self.items = items

    def problems_at(self, key: str, value: object) -> list[ConfigProblem]:
        if self.items:
            return [ConfigProblem(key + item.key, item.value, item.allowed) for item in self.items]
        return [ConfigProblem(key, value, self.allowed)]


def _key(default: object, rule: _Rule, *, secret: bool = False) -> Any:
    """Declare a settings key: its default (already in parsed form) and its rule; a secret one is
    left out of the settings' repr (and so of any log line or traceback that shows them)."""
    return field(default=default, metadata={_RULE: rule}, repr=not secret)


# Rules: each takes the raw TOML value and returns the parsed one or raises _Refused.


def _boolean() -> _Rule:
    def check(raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        raise _Refused("true or false")

    return check


def _integer(low: int | None = None, high: int | None = None, why: str = "") -> _Rule:
    allowed = "an integer" if low is None else f"an integer {low}-{high}"
    allowed += f" ({why})" if why else ""

    def check(raw: object) -> int:
        # bool is an int subclass: `port = true` must not become port 1.
        if isinstance(raw, int) and not isinstance(raw, bool):
            if low is None or high is None or low <= raw <= high:
                return raw
        raise _Refused(allowed)

    return check


def _number(low: float, high: float) -> _Rule:
    allowed = f"a number {low:g}-{high:g}"

    def check(raw: object) -> float:
        if isinstance(raw, int | float) and not isinstance(raw, bool) and low <= raw <= high:
            return float(raw)
        raise _Refused(allowed)  # NaN lands here too: every comparison with it is false

    return check


def _choice(*options: object) -> _Rule:
    allowed = ", ".join(show_value(option) for option in options)

    def check(raw: object) -> object:
        for option in options:
            # Compare types too, or `stopbits = true` would pass as 1.
            if type(raw) is type(option) and raw == option:
                return option
        raise _Refused(allowed)

    return check


def _string(min_length: int = 1, max_length: int | None = None, *, printable: bool = False) -> _Rule:
    if max_length is None:
        allowed = "a non-empty string"
    else:
        allowed = f"a string of {min_length}-{max_length} characters"
    if printable:
        allowed += ", printable ASCII without spaces"

    def check(raw: object) -> str:
        if (
            isinstance(raw, str)
            and min_length <= len(raw)
            and (max_length is None or len(raw) <= max_length)
            and (not printable or all("!" <= char <= "~" for char in raw))
        ):
            return raw
        raise _Refused(allowed)

    return check


def _display_string() -> _Rule:
    """An SNMP DisplayString: printable ASCII, spaces included, at most 255 characters."""
    allowed = "at most 255 printable ASCII characters"

    def check(raw: object) -> str:
        if isinstance(raw, str) and len(raw) <= 255 and all(" " <= char <= "~" for char in raw):
            return raw
        raise _Refused(allowed)

    return check


def _optional(rule: _Rule, meaning: str, word: str = "") -> _Rule:
    """`word` (by default an empty string, as TOML has no null) means None; `meaning` says what
    that stands for."""

    def check(raw: object) -> object:
        if raw == word:
            return None
        try:
            return rule(raw)
        except _Refused as refused:
            raise _Refused(f'"{word}" ({meaning}) or {refused.allowed}') from None

    return check


def _path() -> _Rule:
    text = _string()

    def check(raw: object) -> Path:
        try:
            return Path(text(raw))
        except _Refused:
            raise _Refused("a file path") from None

    return check


def _ipv4_address() -> _Rule:
    allowed = 'an IPv4 address like "0.0.0.0"'

    def check(raw: object) -> str:
        if isinstance(raw, str):
            try:
                return str(IPv4Address(raw))
            except AddressValueError:
                pass
        raise _Refused(allowed)

    return check


def _ipv4_interface() -> _Rule:
    allowed = 'an IPv4 address with its prefix like "192.168.1.24/24"'

    def check(raw: object) -> IPv4Interface:
        # Without an explicit prefix IPv4Interface assumes /32 and broadcasts would go nowhere.
        if not isinstance(raw, str) or "/" not in raw:
            raise _Refused(allowed)
        try:
            return IPv4Interface(raw)
        except (AddressValueError, NetmaskValueError):
            raise _Refused(allowed) from None

    return check


def _ipv4_network() -> _Rule:
    allowed = 'an IPv4 address or network like "192.168.1.50" or "10.0.0.0/8"'

    def check(raw: object) -> IPv4Network:
        if isinstance(raw, str):
            try:
                return IPv4Network(raw)  # strict: "10.0.0.1/8" has host bits set and is refused
            except (AddressValueError, NetmaskValueError, ValueError):
                pass
        raise _Refused(allowed)

    return check


_PASSWORD_HASH = re.compile(r"scrypt\$[0-9]{1,9}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*")


def _password_hash() -> _Rule:
    allowed = "a hash written by `bcpm-gateway set-password` (scrypt$N$r$p$salt$hash)"

    def check(raw: object) -> str:
        if isinstance(raw, str) and _PASSWORD_HASH.fullmatch(raw):
            return raw
        raise _Refused(allowed)

    return check


def _endpoint(default_port: int | None) -> _Rule:
    if default_port is None:
        allowed = '"ipv4:port" with port 1-65535'
    else:
        allowed = f'"ipv4" or "ipv4:port" with port 1-65535 (default {default_port})'

    def check(raw: object) -> tuple[str, int]:
        if not isinstance(raw, str):
            raise _Refused(allowed)
        host, colon, port_text = raw.partition(":")
        try:
            address = str(IPv4Address(host))
        except AddressValueError:
            raise _Refused(allowed) from None
        if not colon:
            if default_port is None:
                raise _Refused(allowed)
            return address, default_port
        if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
            raise _Refused(allowed)
        return address, int(port_text)

    return check


def _list_of(rule: _Rule, what: str) -> _Rule:
    def check(raw: object) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise _Refused(f"a list of {what}")
        parsed = []
        bad = []
        for index, item in enumerate(raw):
            try:
                parsed.append(rule(item))
            except _Refused as refused:
                bad.extend(refused.problems_at(f"[{index}]", item))
        if bad:
            raise _Refused(f"a list of {what}", tuple(bad))
        return tuple(parsed)

    return check


_SCAN_PART = re.compile(r"\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?")


def _address_ranges() -> _Rule:
    low, high = UNIT_ADDRESSES[0], UNIT_ADDRESSES[-1]
    allowed = f'address ranges like "{low}-{high}", "5" or "1-10,20-30" within {low}-{high}, low end first'

    def check(raw: object) -> tuple[int, ...]:
        if not isinstance(raw, str):
            raise _Refused(allowed)
        addresses: set[int] = set()
        for part in raw.split(","):
            match = _SCAN_PART.fullmatch(part)
            if match is None:
                raise _Refused(allowed)
            start = int(match[1])
            end = int(match[2]) if match[2] is not None else start
            if not low <= start <= end <= high:
                raise _Refused(allowed)
            addresses.update(range(start, end + 1))
        return tuple(sorted(addresses))

    return check


def _protocol(octets: Mapping[str, int], refused: Mapping[str, str]) -> _Rule:
    """One of the names in `octets`; a name in `refused` gets its reason."""
    allowed = ", ".join(show_value(name) for name in octets)

    def check(raw: object) -> str:
        if isinstance(raw, str) and raw in octets:
            return raw
        reason = refused.get(raw.lower()) if isinstance(raw, str) else None
        raise _Refused(f"{allowed} ({reason})" if reason else allowed)

    return check


def _passphrase() -> _Rule:
    allowed = f"at least {MIN_PASSPHRASE} characters (RFC 3414), at most 1024"

    def check(raw: object) -> str:
        if isinstance(raw, str) and MIN_PASSPHRASE <= len(raw) <= 1024:
            return raw
        # The passphrase itself never goes into a message.
        raise _Refused(allowed, (ConfigProblem("", _hidden(raw), allowed),))

    return check


def _hidden(raw: object) -> str:
    return f"({len(raw)} characters, not shown)" if isinstance(raw, str) else "(not a string)"


_HEX = re.compile(r"0x(?:[0-9A-Fa-f]{2})+")


def _hex_octets(what: str, low: int, high: int, *, secret: bool) -> _Rule:
    allowed = f'{what}: "0x" and {low}-{high} octets in hex'

    def check(raw: object) -> bytes:
        if isinstance(raw, str) and _HEX.fullmatch(raw) and low <= len(raw) // 2 - 1 <= high:
            return bytes.fromhex(raw[2:])
        raise _Refused(allowed, (ConfigProblem("", _hidden(raw), allowed),) if secret else ())

    return check


def _engine_id() -> _Rule:
    octets = _hex_octets("an SNMP engine ID", 5, 32, secret=False)

    def check(raw: object) -> bytes:
        engine_id = octets(raw)
        if engine_id.strip(b"\x00") and engine_id.strip(b"\xff"):
            return engine_id
        raise _Refused('an SNMP engine ID: "0x" and 5-32 octets in hex, not all 00 nor all ff (RFC 3411)')

    return check


_LOCALIZED_KEY = _hex_octets("a localized key", 16, 64, secret=True)
_NOT_SHOWN = "(not shown)"
_USER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _snmp_users() -> _Rule:
    allowed = "tables [snmp.users.NAME], NAME of 1-32 letters, digits, _ or -"

    def check(raw: object) -> tuple[SnmpUser, ...]:
        if not isinstance(raw, Mapping):  # the value is not shown: it may hold keys
            raise _Refused(allowed, (ConfigProblem("", _NOT_SHOWN, allowed),))
        users: list[SnmpUser] = []
        problems: list[ConfigProblem] = []
        for name, table in raw.items():
            where = f"snmp.users.{name}"
            if not _USER_NAME.fullmatch(name):
                problems.append(ConfigProblem(where, _NOT_SHOWN, allowed))
            elif not isinstance(table, Mapping):
                problems.append(ConfigProblem(where, _NOT_SHOWN, f"a table [{where}]"))
            else:
                found = len(problems)
                user = replace(_parse_section(where, SnmpUser, table, problems, secret=True), name=name)
                if len(problems) == found:  # the rules between keys only once each key is good
                    users.append(_checked_user(user, where, problems))
        if problems:  # keys relative to snmp.users, as the rules of a key give them
            raise _Refused(allowed, tuple(replace(p, key=p.key.removeprefix("snmp.users")) for p in problems))
        return tuple(users)

    return check


def _checked_user(user: SnmpUser, where: str, problems: list[ConfigProblem]) -> SnmpUser:
    """The rules between a user's keys; the level, when not given, follows the privacy protocol."""
    for kind, protocol, octets in (("auth", user.auth, AUTH_KEY_OCTETS), ("priv", user.priv, PRIV_KEY_OCTETS)):
        passphrase, key = getattr(user, f"{kind}_passphrase"), getattr(user, f"{kind}_key")
        if protocol is None:
            if passphrase is not None or key is not None:
                given = f"{kind}_passphrase" if passphrase is not None else f"{kind}_key"
                problems.append(ConfigProblem(f"{where}.{given}", _NOT_SHOWN, f'none with {kind} = "none"'))
        elif (passphrase is None) == (key is None):
            problems.append(
                ConfigProblem(
                    f"{where}.{kind}_passphrase",
                    "(both given)" if key is not None else "(missing)",
                    f"one of {kind}_passphrase (at least {MIN_PASSPHRASE} characters) or {kind}_key "
                    "(the key localized for snmp.engine_id, as `bcpm-gateway snmp-user` writes it)",
                )
            )
        elif key is not None and len(key) != octets[protocol]:
            problems.append(
                ConfigProblem(
                    f"{where}.{kind}_key",
                    f"({len(key)} octets, not shown)",
                    f'{octets[protocol]} octets for {kind} = "{protocol}" ("0x" and {2 * octets[protocol]} hex digits)',
                )
            )
    level = user.level or ("authPriv" if user.priv else "authNoPriv")
    if (level == "authPriv") != (user.priv is not None):
        allowed = '"authNoPriv" with priv = "none"' if user.priv is None else '"authPriv" with a privacy protocol'
        problems.append(ConfigProblem(f"{where}.level", level, allowed + " (a user is served at its one level)"))
    if user.notify_type == "inform" and (user.auth_key is not None or user.priv_key is not None):
        problems.append(
            ConfigProblem(
                f"{where}.notify_type",
                "inform",
                '"trap" for a user with localized keys, or passphrases: an inform is signed with keys '
                "localized for the receiver's engine",
            )
        )
    return replace(user, level=level)


_PORT = _integer(1, 65535)
_COMMUNITY = _string(1, 32, printable=True)


# Settings, one dataclass per TOML section. Defaults are the documented ones (config/gateway.toml).


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """[gateway]: whether to scan for meters at start, and where the saved state lives."""

    operating_mode: Literal["discovery", "locked"] = _key("discovery", _choice("discovery", "locked"))
    state_file: Path = _key(Path("/var/lib/bcpm-gateway/state.json"), _path())


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """[serial]: the RS-485 line, discovery range and poll pacing.

    `timeout` is what a meter gets to answer beyond the wire time of the request and reply.
    `baudrate` "auto" finds the rate and the parity (`parity` is then ignored).
    """

    port: str = _key("/dev/ttyUSB0", _string())
    # "auto": the line settings (rate and parity) are found at start, see gateway.nodes.discovery.
    baudrate: int | Literal["auto"] = _key(19200, _choice(*BAUDRATES, "auto"))
    parity: Literal["N", "E", "O"] = _key("N", _choice("N", "E", "O"))
    stopbits: Literal[1, 2] = _key(1, _choice(1, 2))
    rs485: Literal["none", "kernel", "rts"] = _key("none", _choice("none", "kernel", "rts"))
    rts_delay_before: float = _key(0.0, _number(0.0, 100.0))  # milliseconds
    rts_delay_after: float = _key(0.0, _number(0.0, 100.0))  # milliseconds
    echo: bool = _key(False, _boolean())
    timeout: float = _key(0.2, _number(0.01, 5.0))
    scan: tuple[int, ...] = _key(tuple(UNIT_ADDRESSES), _address_ranges())
    rescan_interval: float = _key(60.0, _number(0.0, 86400.0))
    poll_interval: float = _key(1.0, _number(0.1, 3600.0))
    probe_timeout: float = _key(0.015, _number(0.01, 1.0))
    offline_after: int = _key(3, _integer(1, 100))
    retries: int = _key(1, _integer(0, 5))
    slow_every: int = _key(10, _integer(1, 3600))
    max_queue: int = _key(1024, _integer(16, 100000))


@dataclass(frozen=True, slots=True)
class BacnetSettings:
    """[bacnet]: the BACnet/IP face: router device, virtual network, BBMD or foreign device.

    `network` outside 1-65534 is not an error: it falls back to 5 with a warning, as on the BCPME.
    `foreign_bbmd` is (host, port) or None.
    """

    enabled: bool = _key(True, _boolean())
    address: IPv4Interface = _key(IPv4Interface("127.0.0.1/8"), _ipv4_interface())
    port: int = _key(47808, _PORT)
    device_id_offset: int = _key(
        50000,
        _integer(0, MAX_DEVICE_ID_OFFSET, f"offset + {UNIT_ADDRESSES[-1]} <= {MAX_DEVICE_INSTANCE}"),
    )
    network: int = _key(50, _integer())
    # The network number of the IP side; None ("auto") = learned at start, 1 until then.
    ip_network: int | None = _key(
        None,
        _optional(_integer(VALID_NETWORKS[0], VALID_NETWORKS[-1]), "learned with What-Is-Network-Number", word="auto"),
    )
    vendor_id: int = _key(133, _integer(0, 65535))
    bbmd: bool = _key(False, _boolean())
    bdt_file: Path = _key(Path("/etc/bcpm-gateway/bdt.ini"), _path())
    max_foreign_devices: int = _key(64, _integer(1, 1024))
    # COV subscriptions across every device of the gateway, and of any one subscriber address.
    max_cov_subscriptions: int = _key(1024, _integer(1, 100000))
    max_cov_per_client: int = _key(256, _integer(1, 100000))  # counted per IP address, any port
    # Indefinite (lifetime 0) subscriptions over the gateway: they never expire by themselves.
    max_cov_indefinite: int = _key(128, _integer(0, 100000))
    # Fair shares (bacnet/shares.py): confirmed requests a second from one source IP address;
    # unconfirmed requests (Who-Is, TimeSynchronization...) a second over the gateway; writes saved
    # in the state file (node device names and IDs, AV1/AV2) a minute from one source IP address.
    rate_limit: int = _key(1000, _integer(1, 1000000))
    unconfirmed_rate: int = _key(50, _integer(1, 10000))
    max_saved_writes: int = _key(30, _integer(1, 10000))
    # Longest time to live a foreign device is granted (BBMD); a longer one asked is cut to this.
    max_foreign_ttl: int = _key(900, _integer(1, 65535))
    # Meter objects kept built in memory over all nodes (about 5 KB each); others are built when
    # a request names them. Fewer than a BMS reads in one sweep costs CPU (rebuilds), not errors.
    max_built_objects: int = _key(2048, _integer(1, 100000))
    # Reads of the common properties of meter objects answered from encodings (see reads.py).
    fast_reads: bool = _key(True, _boolean())
    # Meter objects whose changing values the fast reads keep encoded over all nodes (a few
    # hundred bytes each); the least recently read are encoded again when read (some 40 us).
    max_encoded_objects: int = _key(2048, _integer(1, 1000000))
    # Max_Segments_Accepted of every device: a segmented request of at most this many 1476-byte
    # segments (bacpypes3 decodes a request in one piece: its size bounds that work). Segmented
    # requests being received at once, over the gateway and from one IP address.
    max_segments: int = _key(2, _choice(2, 4, 8, 16, 32, 64))
    max_segmented_requests: int = _key(16, _integer(1, 1024))
    max_segmented_requests_per_client: int = _key(4, _integer(1, 1024))
    foreign_bbmd: tuple[str, int] | None = _key(None, _optional(_endpoint(None), "not a foreign device"))
    foreign_ttl: int = _key(300, _integer(1, 65535))
    rtc_control: Literal["bacnet", "modbus"] = _key("bacnet", _choice("bacnet", "modbus"))
    # BACnet limits the ReinitializeDevice password to 20 characters. "" refuses ReinitializeDevice
    # and DeviceCommunicationControl.
    reinit_password: str = _key("", _string(0, 20, printable=True))
    # Refuse every BACnet write (write-access-denied).
    read_only: bool = _key(False, _boolean())
    # Seconds between the network doctor's checks for another user of the virtual network or a
    # device ID (the first at start); 0 = none.
    doctor_interval: float = _key(300.0, _number(0.0, 86400.0))


#: The octets of a localized key: the hash's size for authentication (RFC 3414, RFC 7860), the
#: cipher's key for privacy (RFC 3826; AES-192 and AES-256 keys extended as net-snmp does).
AUTH_KEY_OCTETS = {"sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48, "sha512": 64}
PRIV_KEY_OCTETS = {"aes128": 16, "aes192": 24, "aes256": 32}
MIN_PASSPHRASE = 8  # RFC 3414 11.2


@dataclass(frozen=True, slots=True)
class SnmpUser:
    """[snmp.users.NAME]: an SNMPv3 user of the User-based Security Model (RFC 3414).

    Each key is a passphrase (localized for the engine at start) or a key already localized for
    `snmp.engine_id` (as `bcpm-gateway snmp-user` writes it). `priv` None: no privacy, and the user
    is served at authNoPriv; otherwise at authPriv (`level`, the one level it is served at). Its
    notifications go to `notify_hosts` as traps (signed by this engine) or informs (acknowledged).
    """

    name: str = ""  # the table's own name: no key inside it
    auth: str = _key("sha256", _protocol(AUTH_KEY_OCTETS, {"md5": "MD5 is refused: it is broken; SHA-2 is RFC 7860's"}))
    auth_passphrase: str | None = _key(None, _passphrase(), secret=True)
    auth_key: bytes | None = _key(None, _LOCALIZED_KEY, secret=True)
    priv: str | None = _key(
        "aes128",
        _optional(
            _protocol(
                PRIV_KEY_OCTETS,
                {
                    "des": "DES is refused: its 56-bit key is broken",
                    "3des": "3DES is refused: use AES",
                    "aes": 'spelled "aes128"',
                },
            ),
            "no privacy",
            word="none",
        ),
    )
    priv_passphrase: str | None = _key(None, _passphrase(), secret=True)
    priv_key: bytes | None = _key(None, _LOCALIZED_KEY, secret=True)
    level: Literal["authNoPriv", "authPriv"] | None = _key(None, _choice("authNoPriv", "authPriv"))
    access: Literal["read-only", "read-write"] = _key("read-only", _choice("read-only", "read-write"))
    notify_hosts: tuple[tuple[str, int], ...] = _key((), _list_of(_endpoint(162), "receivers"))
    notify_type: Literal["trap", "inform"] = _key("trap", _choice("trap", "inform"))

    @property
    def localized(self) -> bool:
        """Its keys were given localized (for snmp.engine_id)."""
        return self.auth_key is not None or self.priv_key is not None

    def __str__(self) -> str:
        """What a status page shows of it: nms (sha256, aes128, authPriv, read-write)."""
        return f"{self.name} ({self.auth}, {self.priv or 'no privacy'}, {self.level}, {self.access})"


@dataclass(frozen=True, slots=True)
class SnmpSettings:
    """[snmp]: the SNMP agent (v2c with communities, v3 with users) and its notification receivers.

    `write_community` None means SNMP SET is off; there is deliberately no default.
    `notify_hosts` is a tuple of (host, port): v2c trap receivers. `engine_id` None: the engine ID
    made at the first start, kept in the state file.
    """

    enabled: bool = _key(True, _boolean())
    address: str = _key("0.0.0.0", _ipv4_address())
    port: int = _key(161, _PORT)
    read_community: str = _key("public", _COMMUNITY)
    write_community: str | None = _key(None, _optional(_COMMUNITY, "SET off"))
    trap_community: str = _key("public", _COMMUNITY)
    notify_hosts: tuple[tuple[str, int], ...] = _key(
        (), _list_of(_endpoint(162), 'receivers, "ipv4" or "ipv4:port" (port 162 by default)')
    )
    # SNMPv1 and v2c (communities in clear text): requests answered and traps sent.
    v2c: bool = _key(True, _boolean())
    engine_id: bytes | None = _key(None, _optional(_engine_id(), "made once, kept in the state file"))
    users: tuple[SnmpUser, ...] = _key((), _snmp_users())
    # Seconds an inform waits for its acknowledgement, and how often it is sent again after that.
    inform_timeout: float = _key(1.0, _number(0.1, 60.0))
    inform_retries: int = _key(2, _integer(0, 10))
    # Varbinds in one GETBULK response, whatever max-repetitions asks: bounds the agent's work.
    # Above 4096 a cap means nothing: a varbind takes at least about 16 bytes, so more never fit
    # one 65507-byte UDP datagram (the response is cut to fit one anyway).
    max_response_varbinds: int = _key(128, _integer(1, 4096))
    # The varbinds of a GETBULK response take at most this many times the request's bytes (one
    # always answered): what a request with a forged source can make the agent send its victim.
    bulk_amplification: int = _key(16, _integer(1, 1000))
    # Requests one source address may send in each second (one pysnmp answers counts as ten); more
    # are dropped and counted.
    rate_limit: int = _key(1000, _integer(1, 1000000))
    # Sources allowed to talk to the agent; others are dropped and counted. Empty: any.
    allow: tuple[IPv4Network, ...] = _key((), _list_of(_ipv4_network(), "IPv4 addresses or networks"))
    # Notifications a second to each receiver, with a burst of as many; more are held back and
    # summed up per panel (bcpmNotificationsHeldBack).
    trap_rate: int = _key(10, _integer(1, 1000))
    # sysLocation, sysContact and sysName; an empty name serves the host's name.
    location: str = _key("", _display_string())
    contact: str = _key("", _display_string())
    name: str = _key("", _display_string())

    @property
    def versions(self) -> str:
        """Which versions answer, and the v3 users: "v2c, v3: nms (sha256, aes128, authPriv, read-only)"."""
        on = ["v2c"] if self.v2c else []
        if self.users:
            on.append("v3: " + ", ".join(map(str, self.users)))
        return ", ".join(on)


@dataclass(frozen=True, slots=True)
class ModbusTcpSettings:
    """[modbus_tcp]: the Modbus TCP server for several masters."""

    enabled: bool = _key(True, _boolean())
    address: str = _key("0.0.0.0", _ipv4_address())
    port: int = _key(502, _PORT)
    cache_max_age: float = _key(2.0, _number(0.0, 3600.0))
    max_connections: int = _key(16, _integer(1, 1024))
    # Writes, and every function code that is not a read, answered exception 01 (illegal function).
    read_only: bool = _key(False, _boolean())
    # Masters allowed to connect (addresses or networks); () = any. Others are disconnected.
    allow: tuple[IPv4Network, ...] = _key((), _list_of(_ipv4_network(), "IPv4 addresses or networks"))
    # Seconds a connection may stay silent between requests (0 = forever), and a frame may take
    # to arrive whole once its first byte has; TCP keepalive probes after `keepalive` idle seconds.
    idle_timeout: float = _key(60.0, _number(0.0, 86400.0))
    frame_timeout: float = _key(5.0, _number(0.1, 60.0))
    keepalive: int = _key(20, _integer(0, 7200))


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    """[upstream]: the second RS-485 port, toward the building system (the BCPME's Protocol_Mode).

    "mstp": a BACnet MS/TP master node, the router's port on the MS/TP network `network`
    (`baudrate` from MSTP_BAUDRATES, 8N1). "modbus_rtu": a Modbus RTU slave serving the meters as
    Modbus TCP does, answering `units` (None: the meters' own addresses).
    """

    mode: Literal["off", "mstp", "modbus_rtu"] = _key("off", _choice(*UPSTREAM_MODES))
    port: str = _key("/dev/ttyUSB1", _string())
    baudrate: int = _key(38400, _choice(*sorted({*BAUDRATES, *MSTP_BAUDRATES})))
    parity: Literal["N", "E", "O"] = _key("N", _choice("N", "E", "O"))
    stopbits: Literal[1, 2] = _key(1, _choice(1, 2))
    rs485: Literal["none", "kernel", "rts"] = _key("none", _choice("none", "kernel", "rts"))
    rts_delay_before: float = _key(0.0, _number(0.0, 100.0))  # milliseconds
    rts_delay_after: float = _key(0.0, _number(0.0, 100.0))  # milliseconds
    echo: bool = _key(False, _boolean())
    # MS/TP
    mac: int = _key(127, _integer(MSTP_MACS[0], MSTP_MACS[-1]))
    max_master: int = _key(127, _integer(1, MSTP_MACS[-1]))
    max_info_frames: int = _key(10, _integer(1, 255))
    network: int = _key(51, _integer(VALID_NETWORKS[0], VALID_NETWORKS[-1]))
    # Modbus RTU slave
    units: tuple[int, ...] | None = _key(None, _optional(_address_ranges(), "the meters' own addresses"))
    read_only: bool = _key(False, _boolean())
    cache_max_age: float = _key(2.0, _number(0.0, 3600.0))


@dataclass(frozen=True, slots=True)
class WebSettings:
    """[web]: HTTPS status pages, JSON API and /metrics.

    `tls_cert` / `tls_key` None: a self-signed certificate made at first start beside the state
    file. `password_hash` None: no login possible (set it with `bcpm-gateway set-password`).
    """

    enabled: bool = _key(False, _boolean())
    address: str = _key("0.0.0.0", _ipv4_address())
    port: int = _key(443, _PORT)
    tls_cert: Path | None = _key(None, _optional(_path(), "a self-signed certificate in the state folder"))
    tls_key: Path | None = _key(None, _optional(_path(), "the self-signed certificate's key"))
    password_hash: str | None = _key(None, _optional(_password_hash(), "nobody can log in"))
    # Clients (addresses or networks) the pages answer; () = any. /metrics answers `metrics_allow`,
    # or while that is () the same clients as the pages (see `metrics_clients`).
    allow: tuple[IPv4Network, ...] = _key((), _list_of(_ipv4_network(), "IPv4 addresses or networks"))
    metrics_allow: tuple[IPv4Network, ...] = _key((), _list_of(_ipv4_network(), "IPv4 addresses or networks"))
    session_minutes: int = _key(60, _integer(1, 1440))
    # Failed logins from one client address per minute, those being checked included; more are
    # refused without a check.
    login_attempts: int = _key(5, _integer(1, 100))
    # Connections open at once: in all, and from one client address (the smaller of the two counts;
    # at a cap, a newcomer closes an idle one of its own address or of the address holding most).
    max_connections: int = _key(32, _integer(1, 1024))
    max_connections_per_client: int = _key(8, _integer(1, 1024))
    # Requests, and new connections, one client address may make a second (twice as many in a burst).
    rate_limit: int = _key(20, _integer(1, 10000))
    # Hours of every CT channel's current kept in memory for the trends, a sample a minute (0: none);
    # 132 KB a node for 24 hours.
    trend_hours: int = _key(24, _integer(0, 24))

    @property
    def metrics_clients(self) -> tuple[IPv4Network, ...]:
        """Who may read /metrics (no login): `metrics_allow`, else the clients of the pages."""
        return self.metrics_allow or self.allow


@dataclass(frozen=True, slots=True)
class LogSettings:
    """[log]: level and output format ("auto" = JSON unless stderr is a terminal)."""

    level: Literal["debug", "info", "warning", "error"] = _key("info", _choice("debug", "info", "warning", "error"))
    format: Literal["auto", "json", "console"] = _key("auto", _choice("auto", "json", "console"))


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; `warnings` are non-fatal notices the caller should log; `source` the
    site's file it was read from (None when made in code: the demo, tests)."""

    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    serial: SerialSettings = field(default_factory=SerialSettings)
    bacnet: BacnetSettings = field(default_factory=BacnetSettings)
    snmp: SnmpSettings = field(default_factory=SnmpSettings)
    modbus_tcp: ModbusTcpSettings = field(default_factory=ModbusTcpSettings)
    web: WebSettings = field(default_factory=WebSettings)
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    log: LogSettings = field(default_factory=LogSettings)
    warnings: tuple[str, ...] = ()
    source: Path | None = None


#: The sections of the file, each with its dataclass, in the order of `Config`.
SECTIONS: Mapping[str, type] = {
    "gateway": GatewaySettings,
    "serial": SerialSettings,
    "bacnet": BacnetSettings,
    "snmp": SnmpSettings,
    "modbus_tcp": ModbusTcpSettings,
    "web": WebSettings,
    "upstream": UpstreamSettings,
    "log": LogSettings,
}


def default_config() -> Config:
    """The configuration of an empty file."""
    return Config()


#: The keys a running gateway may change in its configuration (the web face's settings), by
#: section. Never a path (the files a gateway reads or writes: the state file, bdt.ini, the TLS
#: certificate and key, the serial device) and never who may reach the web face and how (enabled,
#: address, port, allow lists, password): those only an administrator of the machine changes, in
#: the site's file. A key added to a section is not settable until it is listed here.
SETTABLE: Mapping[str, frozenset[str]] = {
    section: frozenset(names.split())
    for section, names in {
        "gateway": "operating_mode",
        "serial": "baudrate parity stopbits rs485 rts_delay_before rts_delay_after echo timeout scan rescan_interval "
        "poll_interval probe_timeout offline_after retries slow_every max_queue",
        "bacnet": "enabled address port device_id_offset network ip_network vendor_id bbmd max_foreign_devices "
        "max_cov_subscriptions max_cov_per_client max_cov_indefinite rate_limit unconfirmed_rate max_saved_writes "
        "max_foreign_ttl max_built_objects fast_reads max_encoded_objects max_segments max_segmented_requests "
        "max_segmented_requests_per_client foreign_bbmd foreign_ttl rtc_control reinit_password read_only "
        "doctor_interval",
        "snmp": "enabled address port read_community write_community trap_community notify_hosts v2c users "
        "inform_timeout inform_retries max_response_varbinds bulk_amplification rate_limit allow trap_rate location "
        "contact name",
        "modbus_tcp": "enabled address port cache_max_age max_connections read_only allow idle_timeout frame_timeout "
        "keepalive",
        "web": "session_minutes login_attempts max_connections max_connections_per_client rate_limit trend_hours",
        "log": "level format",
    }.items()
}
#: Where a running gateway keeps what it was told to change: beside the state file, owned by the
#: gateway's user, laid over the site's file by `load_config`.
SETTINGS_FILE = "web-settings.toml"
#: A BBMD table uploaded on the running gateway, beside the state file: used instead of
#: `bacnet.bdt_file` while it is there (a fixed name: an upload never names a path).
UPLOADED_BDT = "web-bdt.ini"


def settings_file(config: Config) -> Path:
    """The file of settings changed while running (see SETTABLE), beside the state file."""
    return config.gateway.state_file.parent / SETTINGS_FILE


def load_config(path: Path) -> Config:
    """Read and validate a TOML file with the settings changed while running laid over it (see
    SETTABLE); raise ConfigError naming the file(s) and every problem."""
    data = read_toml(path)
    try:
        config = parse_config(data)
    except ConfigError as err:
        raise ConfigError(err.problems, heading=f"config file {path}:") from None
    changed_file = settings_file(config)
    if changed_file.exists():
        changed = read_settings(changed_file)
        try:
            config = parse_config(merge_config(data, changed))
        except ConfigError as err:
            raise ConfigError(err.problems, heading=f"config file {path} with {changed_file} over it:") from None
    return with_uploads(replace(config, source=path))


def uploaded_bdt(config: Config) -> Path:
    """Where a BBMD table uploaded on the running gateway is kept (see UPLOADED_BDT)."""
    return config.gateway.state_file.parent / UPLOADED_BDT


def with_uploads(config: Config) -> Config:
    """The configuration with what was uploaded on the running gateway in use: its BBMD table."""
    uploaded = uploaded_bdt(config)
    if uploaded.exists():
        return replace(config, bacnet=replace(config.bacnet, bdt_file=uploaded))
    return config


def read_settings(path: Path) -> dict[str, dict[str, Any]]:
    """The settings changed while running, as raw TOML tables; ConfigError for a key not in
    SETTABLE, a file others than its owner may write, or one that is not TOML. {} when there is
    no such file."""
    if not path.exists():
        return {}
    if path.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ConfigError(heading=f"settings file {path} is writable by others than its owner: chmod go-w {path}")
    data = read_toml(path)
    problems = [
        ConfigProblem(f"{section}.{key}", value, "a key the running gateway may change (see SETTABLE)")
        for section, keys in data.items()
        for key, value in (keys.items() if isinstance(keys, Mapping) else [("", keys)])
        if key not in SETTABLE.get(section, ())
    ]
    if problems:
        raise ConfigError(problems, heading=f"settings file {path}:")
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """The raw tables of a TOML file; ConfigError when it cannot be read or is not TOML."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        raise ConfigError(heading=f"config file {path}: cannot read it: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(heading=f"config file {path} is not UTF-8 text: {err}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # The message ends with "(at line L, column C)".
        raise ConfigError(heading=f"config file {path} is not valid TOML: {err}") from None


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate raw TOML data (as from tomllib) into a Config; missing keys take defaults."""
    problems: list[ConfigProblem] = []
    sections: dict[str, Any] = {}
    for name, raw in data.items():
        cls = SECTIONS.get(name)
        if cls is None:
            allowed = "sections " + ", ".join(f"[{section}]" for section in SECTIONS)
            problems.append(ConfigProblem(name, raw, allowed))
        elif not isinstance(raw, Mapping):
            problems.append(ConfigProblem(name, raw, f"a table [{name}]"))
        else:
            sections[name] = _parse_section(name, cls, raw, problems)
    for name, cls in SECTIONS.items():
        sections.setdefault(name, cls())
    warnings: list[str] = []
    _check_across(sections, problems, warnings)
    if problems:
        raise ConfigError(problems)
    return Config(**sections, warnings=tuple(warnings))


def allowed_values(section: str, key: str) -> str:
    """What a key takes, in the words of its errors (``"an integer 1-65535"``)."""
    rule = next(spec for spec in fields(SECTIONS[section]) if spec.name == key).metadata[_RULE]
    try:
        rule(_NOTHING)
    except _Refused as refused:
        return refused.allowed
    return ""


_NOTHING = object()  # what no rule takes


def raw_settings(config: Config) -> dict[str, dict[str, Any]]:
    """Every key of every section as the TOML value that gives what `config` holds (the rules
    undone): `parse_config` of it gives the same settings back. For a download of the whole
    configuration and for forms that show each key as a user would write it. A key whose value
    TOML cannot write (an SNMPv3 user's passphrase it does not have) is left out, as the file
    leaves it out.

    >>> raw_settings(default_config())["serial"]["scan"], raw_settings(default_config())["bacnet"]["ip_network"]
    ('1-247', 'auto')
    """
    return {name: _raw_table(getattr(config, name)) for name in SECTIONS}


def _raw_table(settings: object) -> dict[str, Any]:
    table = {}
    for spec in fields(settings):  # type: ignore[arg-type]
        if _RULE in spec.metadata:  # (an SNMPv3 user's name is its table's, not a key)
            value = _raw(getattr(settings, spec.name), spec.metadata[_RULE])
            if value is not _LEFT_OUT:
                table[spec.name] = value
    return table


_LEFT_OUT = object()  # a key none of whose words stands for its value (None): not written


def _raw(value: object, rule: _Rule | None = None) -> Any:
    if value is None:  # an optional key's word for none: "" or "auto", or none at all
        return next((word for word in ("", "auto") if rule is not None and _gives_none(rule, word)), _LEFT_OUT)
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, IPv4Network) and value.prefixlen == 32:
        return str(value.network_address)  # a host, as a site writes it
    if isinstance(value, Path | IPv4Interface | IPv4Network):
        return str(value)
    if isinstance(value, tuple) and all(isinstance(item, SnmpUser) for item in value) and not _takes(rule, []):
        return {user.name: _raw_table(user) for user in value}  # [snmp.users.NAME], none: an empty table
    if isinstance(value, tuple):
        if len(value) == 2 and isinstance(value[0], str) and type(value[1]) is int:
            return f"{value[0]}:{value[1]}"  # an endpoint
        if value and all(type(item) is int for item in value):
            return _ranges(value)  # Modbus addresses
        return [_raw(item) for item in value]
    raise TypeError(f"no TOML form for {value!r}")


def _gives_none(rule: _Rule, word: str) -> bool:
    return _takes(rule, word) and rule(word) is None


def _takes(rule: _Rule | None, raw: object) -> bool:
    try:
        rule and rule(raw)
    except _Refused:
        return False
    return True


def _ranges(numbers: tuple[int, ...]) -> str:
    """Sorted numbers as "1-10,20,30-32"."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return ",".join(str(low) if low == high else f"{low}-{high}" for low, high in runs)


def merge_config(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two raw TOML mappings: tables merge key by key, anything else is replaced.

    Neither input is changed. The demo uses it to lay a user's file over its own defaults:
    ``parse_config(merge_config(demo_defaults, tomllib.loads(user_text)))``.
    """
    merged = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_config(current, value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_section(
    name: str, cls: type, raw: Mapping[str, Any], problems: list[ConfigProblem], *, secret: bool = False
) -> Any:
    """The section's settings; a ``secret`` section does not show the value of a key it does not
    know (a misspelt passphrase)."""
    declared = {spec.name: spec for spec in fields(cls) if _RULE in spec.metadata}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        spec = declared.get(key)
        if spec is None:
            allowed = f"keys in [{name}]: " + ", ".join(declared)
            problems.append(ConfigProblem(f"{name}.{key}", _NOT_SHOWN if secret else value, allowed))
            continue
        try:
            values[key] = spec.metadata[_RULE](value)
        except _Refused as refused:
            problems.extend(refused.problems_at(f"{name}.{key}", value))
    return cls(**values)


def _check_across(sections: dict[str, Any], problems: list[ConfigProblem], warnings: list[str]) -> None:
    """Rules that involve more than one key, and fallbacks that only warn."""
    bacnet: BacnetSettings = sections["bacnet"]
    if bacnet.network not in VALID_NETWORKS:
        warnings.append(
            f"bacnet.network = {bacnet.network}: allowed 1-65534; using {FALLBACK_NETWORK} instead, as the BCPME does"
        )
        sections["bacnet"] = replace(bacnet, network=FALLBACK_NETWORK)
    if bacnet.ip_network is not None and bacnet.ip_network == sections["bacnet"].network:
        problems.append(
            ConfigProblem(
                "bacnet.ip_network",
                bacnet.ip_network,
                f'"auto" or a number other than bacnet.network ({bacnet.ip_network})',
            )
        )
    web: WebSettings = sections["web"]
    if (web.tls_cert is None) != (web.tls_key is None):
        problems.append(
            ConfigProblem(
                "web.tls_key" if web.tls_key is None else "web.tls_cert",
                "",
                "both web.tls_cert and web.tls_key, or neither (self-signed)",
            )
        )
    _check_snmp(sections["snmp"], problems, warnings)
    _check_upstream(sections, problems, warnings)
    if bacnet.bbmd and bacnet.foreign_bbmd is not None:
        host, port = bacnet.foreign_bbmd
        problems.append(
            ConfigProblem(
                "bacnet.foreign_bbmd",
                f"{host}:{port}",
                '"" when bacnet.bbmd = true (the gateway is a BBMD or a foreign device, not both)',
            )
        )


def _check_snmp(snmp: SnmpSettings, problems: list[ConfigProblem], warnings: list[str]) -> None:
    if not snmp.v2c and not snmp.users:
        problems.append(
            ConfigProblem("snmp.v2c", False, "true, or false with SNMPv3 users ([snmp.users.NAME]) to answer")
        )
    if not snmp.v2c and snmp.notify_hosts:
        receivers = [f"{host}:{port}" for host, port in snmp.notify_hosts]
        problems.append(ConfigProblem("snmp.notify_hosts", receivers, "[] with snmp.v2c = false (they get v2c traps)"))
    for user in snmp.users:
        if user.localized and snmp.engine_id is None:
            key = "auth_key" if user.auth_key is not None else "priv_key"
            problems.append(
                ConfigProblem(
                    f"snmp.users.{user.name}.{key}",
                    _NOT_SHOWN,
                    "a localized key only with snmp.engine_id set (the engine it was localized for), or a passphrase",
                )
            )
    if snmp.enabled and snmp.v2c and snmp.users:
        warnings.append(
            "snmp.v2c = true beside SNMPv3 users: v2c communities travel in clear text; "
            "set snmp.v2c = false once every manager speaks SNMPv3"
        )


def _check_upstream(sections: dict[str, Any], problems: list[ConfigProblem], warnings: list[str]) -> None:
    """What the upstream port's mode asks of its other keys and of the other sections."""
    upstream: UpstreamSettings = sections["upstream"]
    bacnet: BacnetSettings = sections["bacnet"]
    if upstream.mode == "off":
        return
    if upstream.port == sections["serial"].port:
        problems.append(
            ConfigProblem("upstream.port", upstream.port, "a port other than serial.port (the meters' line)")
        )
    if upstream.mode == "modbus_rtu":
        if upstream.baudrate not in BAUDRATES:
            allowed = ", ".join(map(str, BAUDRATES))
            problems.append(
                ConfigProblem("upstream.baudrate", upstream.baudrate, f'{allowed} with mode = "modbus_rtu"')
            )
        return
    mstp = 'with mode = "mstp"'
    if upstream.baudrate not in MSTP_BAUDRATES:
        allowed = ", ".join(map(str, MSTP_BAUDRATES))
        problems.append(ConfigProblem("upstream.baudrate", upstream.baudrate, f"{allowed} {mstp}"))
    for key, value, fixed in (("parity", upstream.parity, "N"), ("stopbits", upstream.stopbits, 1)):
        if value != fixed:
            problems.append(ConfigProblem(f"upstream.{key}", value, f"{show_value(fixed)} {mstp} (MS/TP is 8N1)"))
    if upstream.mac > upstream.max_master:
        problems.append(
            ConfigProblem("upstream.max_master", upstream.max_master, f"{upstream.mac}-127 (at least upstream.mac)")
        )
    if not bacnet.enabled:
        problems.append(
            ConfigProblem("upstream.mode", upstream.mode, '"off" or "modbus_rtu" with bacnet.enabled = false')
        )
    taken = {"bacnet.network": bacnet.network, "bacnet.ip_network": bacnet.ip_network}
    for key, number in taken.items():
        if upstream.network == number:
            problems.append(
                ConfigProblem("upstream.network", upstream.network, f"a number other than {key} ({number})")
            )


def defaults_to_change_warning(config: Config) -> str | None:
    """A warning naming the keys left at a default that opens a face on a non-loopback address to anyone."""
    bacnet, snmp, modbus, web = config.bacnet, config.snmp, config.modbus_tcp, config.web
    found = []
    if snmp.enabled and snmp.v2c and not IPv4Address(snmp.address).is_loopback and snmp.read_community == "public":
        found.append('snmp.read_community = "public" (anyone can read)')
    if bacnet.enabled and not bacnet.address.ip.is_loopback and not bacnet.reinit_password:
        found.append('bacnet.reinit_password = "" (no password for ReinitializeDevice)')
    if modbus.enabled and not IPv4Address(modbus.address).is_loopback and not modbus.read_only and not modbus.allow:
        found.append("modbus_tcp.read_only = false with modbus_tcp.allow = [] (any host can write to the meters)")
    if web.enabled and not IPv4Address(web.address).is_loopback and not web.metrics_clients:
        found.append("web.allow = [] with web.metrics_allow = [] (any host reads /metrics, serial numbers included)")
    if not found:
        return None
    return "faces on the network run with defaults a site should change: " + "; ".join(found)


def with_key(text: str, section: str, key: str, value: object) -> str:
    """TOML text with `key` of `[section]` set to `value`, comments and the rest kept: the key's
    line replaced, or added under the section's header, or a new section at the end. `value`
    None removes the key's line, if there is one."""
    import tomli_w  # only the commands that write a config file need it

    line = "" if value is None else tomli_w.dumps({key: value}).strip()
    lines = text.splitlines()
    header = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?")
    current, header_at = None, None
    for number, existing in enumerate(lines):
        found = header.fullmatch(existing)
        if found:
            current = found[1]
            header_at = number if current == section else header_at
        elif current == section and re.match(rf"\s*{re.escape(key)}\s*=", existing):
            lines[number : number + 1] = [] if value is None else [line]
            return "\n".join(lines) + "\n"
    if value is None:
        return text
    if header_at is None:
        return "\n".join([*lines, "", f"[{section}]", line]) + "\n"
    lines.insert(header_at + 1, line)
    return "\n".join(lines) + "\n"


SECRET_KEYS = (
    "read_community",
    "write_community",
    "trap_community",
    "reinit_password",
    "password_hash",
    "auth_passphrase",
    "auth_key",
    "priv_passphrase",
    "priv_key",
)


def readable_secrets_warning(path: Path) -> str | None:
    """A warning when a config file that holds secrets (communities, password) is readable by others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(errors="replace")
    except OSError:
        return None
    held = [key for key in SECRET_KEYS if re.search(rf"^\s*{key}\s*=", text, re.MULTILINE)]
    if mode & stat.S_IROTH and held:
        return f"config file {path} is readable by other users and holds {', '.join(held)}: chmod o-r {path}"
    return None
