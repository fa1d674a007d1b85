"""The gateway's persistent state: node profiles, user overrides and router settings in one file.

    store = StateStore(config.gateway.state_file)
    state = store.load()                    # an empty State if the file does not exist yet
    state = state.with_override(3, DeviceOverride(object_name="PDU_A"))
    store.save(state)                       # old file or new file after a power cut, never half
    with store.held(): ...                  # a running gateway holds the file; `forget` waits its turn

The file is JSON a person can read and repair:

    {"version": 1,
     "profiles": {"1": {"address": 1, "serial": 4660, "model": "A", ...}},
     "overrides": {"1": {"object_instance": 1001, "object_name": "PDU_A"}},
     "router": {"device_id_offset": null, "network": null},
     "database_revision": 3,
     "line": {"baudrate": 9600, "parity": "N"},
     "snmp_engine": {"id": "80000ef905a1b2c3d4e5f60718", "boots": 12}}

`cov_subscriptions` are the BACnet COV subscriptions, so a BMS keeps its notifications across a
restart (optional: a file without it loads with none):

     "cov_subscriptions": [{"node": 1, "object": "analog-input,1336",
                            "subscriber": "192.168.1.50:47808", "process": 7, "confirmed": true,
                            "lifetime": 600, "expires": "2026-12-06T23:30:05Z"}]

`node` is the Modbus address of the node device (null: the router's device), `subscriber` the
subscriber's address on the BACnet/IP network ("net:address" behind another router), `lifetime`
the seconds granted (0 = indefinite, `expires` null) and `expires` when a timed one ends (UTC).
An entry that is not exactly this is skipped with a warning naming it; the rest of the file loads.

`circuit_names` are the names users gave circuits (CT channels 1-46: branch circuits 1-42, AUX
43-46), by node and channel; every face that describes a circuit shows them (optional: a file
without it loads with none):

     "circuit_names": {"1": {"7": "Rack A12 PDU A", "43": "Mains L1"}}

What a name may hold: `gateway.nodes.circuits`.

`database_revision` is the BACnet devices' Database_Revision, which the BACnet face raises and
saves (`gateway/bacnet/identities.py`); it is kept here so that it survives restarts. A file
written before it existed loads as 0.
`line` holds the line settings ``serial.baudrate = "auto"`` found last, tried first at the next
start; a file without it (written before it existed, or before they were found) loads as None.
`snmp_engine` is the SNMP agent's snmpEngineID and snmpEngineBoots (RFC 3414: the boots rise at
every start, so a manager's cached engine time stays valid); None until the agent first started.
`mstp` holds the Max_Master a BACnet client wrote to the router's MS/TP port (`{"max_master": 32}`);
a file without it loads as None (the configured `upstream.max_master`).

A file that is not exactly this is refused with a StateError naming the file and the problem
(but for a COV subscription, see above); nothing is ever silently dropped. The same check runs
before a save, so the gateway never writes a file it would refuse at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import ipaddress
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any

import structlog

from gateway.config import (
    BAUDRATES,
    MAX_DEVICE_ID_OFFSET,
    MAX_DEVICE_INSTANCE,
    VALID_NETWORKS,
)
from gateway.errors import StateError
from gateway.files import write_atomically
from gateway.modbus import UNIT_ADDRESSES
from gateway.nodes.circuits import circuit_name_problem
from gateway.nodes.profile import NodeProfile
from gateway.pointmap import CIRCUITS
from gateway.serialport import PARITIES

__all__ = [
    "DeviceOverride",
    "IdentityStore",
    "SavedEngine",
    "SavedLine",
    "SavedSubscription",
    "State",
    "StateStore",
]

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class DeviceOverride:
    """A user-written BACnet identity for a node's device; it survives rediscovery.

    None means "not overridden, use the generated value".
    """

    object_instance: int | None = None
    object_name: str | None = None


@dataclass(frozen=True, slots=True)
class SavedSubscription:
    """A BACnet COV subscription kept across restarts (see the module's docstring)."""

    node: int | None  # the node device's Modbus address; None: the router's device
    object: str  # "analog-input,1336"
    subscriber: str  # "192.168.1.50:47808", or "9:0x0a0b" behind another router
    process: int  # Subscriber_Process_Identifier
    confirmed: bool
    lifetime: int  # seconds granted; 0 = indefinite
    expires: datetime | None  # when a timed one ends (UTC); None when indefinite


@dataclass(frozen=True, slots=True)
class SavedLine:
    """The line settings ``serial.baudrate = "auto"`` found at the last start."""

    baudrate: int
    parity: str


@dataclass(frozen=True, slots=True)
class SavedEngine:
    """The SNMP agent's engine ID, and how many times it started with it (snmpEngineBoots)."""

    id: bytes
    boots: int


class _Keep(Enum):
    KEEP = "keep"


def _frozen_mapping() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class State:
    """Everything the gateway keeps across restarts. Immutable: the helpers return new States.

    `device_id_offset` and `network` are the router's AV1 and AV2 as written by a BACnet client;
    None means "use the configured value". `database_revision` is the BACnet face's (see above).
    `line` is None until ``serial.baudrate = "auto"`` has found the line settings once.
    `snmp_engine` is None until the SNMP agent first started. `mstp_max_master` is the MS/TP port's
    Max_Master as written by a BACnet client; None means "use the configured value".
    """

    profiles: Mapping[int, NodeProfile] = field(default_factory=_frozen_mapping)
    overrides: Mapping[int, DeviceOverride] = field(default_factory=_frozen_mapping)
    device_id_offset: int | None = None
    network: int | None = None
    database_revision: int = 0
    line: SavedLine | None = None
    cov_subscriptions: tuple[SavedSubscription, ...] = ()
    circuit_names: Mapping[int, Mapping[int, str]] = field(default_factory=_frozen_mapping)
    snmp_engine: SavedEngine | None = None
    mstp_max_master: int | None = None

    def __post_init__(self) -> None:
        # Copy into read-only views, sorted by address, so no caller's dict can change a State.
        object.__setattr__(self, "profiles", MappingProxyType(dict(sorted(self.profiles.items()))))
        object.__setattr__(self, "overrides", MappingProxyType(dict(sorted(self.overrides.items()))))
        names = {a: MappingProxyType(dict(sorted(n.items()))) for a, n in sorted(self.circuit_names.items()) if n}
        object.__setattr__(self, "circuit_names", MappingProxyType(names))
        for address, profile in self.profiles.items():
            if profile.address != address:
                raise ValueError(f"profile of address {profile.address} filed under {address}")

    def with_profiles(self, profiles: Iterable[NodeProfile]) -> State:
        """Add or replace the profiles of these nodes (a discovery's result); the others are kept."""
        merged: dict[int, NodeProfile] = {**self.profiles, **{profile.address: profile for profile in profiles}}
        return replace(self, profiles=merged)

    def without_nodes(self, addresses: Iterable[int]) -> State:
        """Forget these nodes: their profiles, overrides and circuit names."""
        gone = set(addresses)
        return replace(
            self,
            profiles={a: p for a, p in self.profiles.items() if a not in gone},
            overrides={a: o for a, o in self.overrides.items() if a not in gone},
            circuit_names={a: n for a, n in self.circuit_names.items() if a not in gone},
        )

    def with_override(self, address: int, override: DeviceOverride) -> State:
        """Set the override of one node; an override with nothing set removes it."""
        overrides = dict(self.overrides)
        if override == DeviceOverride():
            overrides.pop(address, None)
        else:
            overrides[address] = override
        return replace(self, overrides=overrides)

    def with_circuit_names(self, address: int, names: Mapping[int, str | None]) -> State:
        """Name circuits of one node (channel -> name; None or "" removes the name), the others kept."""
        kept = dict(self.circuit_names.get(address, {}))
        for channel, name in names.items():
            if name:
                kept[channel] = name
            else:
                kept.pop(channel, None)
        return replace(self, circuit_names={**self.circuit_names, address: kept})

    def with_cov_subscriptions(self, subscriptions: Iterable[SavedSubscription]) -> State:
        """Keep these COV subscriptions (all of them: they replace the ones kept)."""
        return replace(self, cov_subscriptions=tuple(subscriptions))

    def with_line(self, line: SavedLine) -> State:
        """Keep the line settings found by ``serial.baudrate = "auto"``."""
        return replace(self, line=line)

    def with_snmp_engine(self, engine: SavedEngine) -> State:
        """Keep the SNMP agent's engine ID and boots."""
        return replace(self, snmp_engine=engine)

    def with_router(
        self,
        *,
        device_id_offset: int | None | _Keep = _Keep.KEEP,
        network: int | None | _Keep = _Keep.KEEP,
    ) -> State:
        """Set AV1 and/or AV2 (None = back to the configured value); an omitted one is kept."""
        changes: dict[str, Any] = {}
        if not isinstance(device_id_offset, _Keep):
            changes["device_id_offset"] = device_id_offset
        if not isinstance(network, _Keep):
            changes["network"] = network
        return replace(self, **changes)

    def with_mstp_max_master(self, max_master: int) -> State:
        """Keep the MS/TP port's Max_Master written over BACnet."""
        return replace(self, mstp_max_master=max_master)

    def with_database_revision(self, revision: int) -> State:
        """Keep the BACnet devices' Database_Revision."""
        return replace(self, database_revision=revision)


@dataclass(frozen=True, slots=True)
class StateStore:
    """Reads and atomically writes the state file at `path`.

    `save` is safe from one thread at a time only: the caller serialises saves (concurrent saves
    would each land whole, but the later rename wins and stale temp-file cleanup could race).
    """

    path: Path

    def load(self) -> State:
        """The saved state; an empty State if the file does not exist. Raises StateError."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        except OSError as err:
            raise StateError(f"state file {self.path}: cannot read it: {err.strerror}") from err
        try:
            data = json.loads(raw)
        except ValueError as err:  # JSONDecodeError and UnicodeDecodeError alike
            raise StateError(f"state file {self.path}: not valid JSON: {err}") from None
        problems = _problems(data)
        if problems:
            raise StateError(self._message(problems))
        subscriptions, skipped = _cov_subscriptions(data.get("cov_subscriptions", []))
        for problem in skipped:
            log.warning("state file cov subscription skipped", file=str(self.path), detail=problem)
        return replace(_state_from_json(data), cov_subscriptions=subscriptions)

    def save(self, state: State) -> None:
        """Write `state` so that a power cut at any moment leaves the old or the new file.

        Temp file in the same folder, flush, fsync, rename over the old file, fsync the folder
        (so the rename itself survives a power cut). Creates the folder. Raises StateError.
        """
        data = _state_to_json(state)
        problems = _problems(data) + _cov_subscriptions(data.get("cov_subscriptions", []))[1]
        if problems:
            raise StateError(self._message(["refusing to save an invalid state", *problems]))
        payload = (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
            write_atomically(self.path, payload)
        except OSError as err:
            reason = err.strerror or str(err)
            raise StateError(f"state file {self.path}: cannot save it: {reason}") from err

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the state file for this process: while a gateway holds it, others are refused.

        A lock file beside the state file (flock, released by the kernel if the process dies)
        holds the process id for the message. Raises StateError when another process holds it.
        """
        lock = self.path.with_name(self.path.name + ".lock")
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StateError(f"state file {self.path}: cannot create its lock {lock}: {err.strerror}") from err
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
                raise StateError(
                    f"state file {self.path}: in use by a running gateway (process {holder}); "
                    "stop it first (systemctl stop bcpm-gateway)"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)

    def _temp_prefix(self) -> str:
        return f".{self.path.name}."

    def _remove_stale_temp_files(self) -> None:
        # Only a crash between write and rename leaves one; with one writer none can be live.
        for stale in self.path.parent.glob(glob.escape(self._temp_prefix()) + "*.tmp"):
            stale.unlink(missing_ok=True)

    def _message(self, problems: list[str]) -> str:
        return "\n".join(f"state file {self.path}: {problem}" for problem in problems)


# The JSON schema, as tables: field name -> (test of the JSON value, what is allowed).


class IdentityStore:
    """The saved state while the gateway runs: node profiles, device names and IDs, router settings.

    One copy for every thread: discovery saves profiles on the bus thread, BACnet clients rename
    devices on the main loop. `update` saves a change before anyone sees it. `at_start` is the
    state as the gateway found it, before anything was saved (the BACnet face raises
    Database_Revision when the nodes it starts with are not those).
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._state = store.load()
        self.at_start = self._state

    @property
    def state(self) -> State:
        return self._state

    def update(self, change: Callable[[State], State]) -> State:
        """Apply a change to the saved state and write it atomically; returns the new state."""
        with self._lock:
            state = change(self._state)
            self._store.save(state)
            self._state = state
            return state

    def saved_profiles(self) -> list[NodeProfile]:
        return sorted(self._state.profiles.values(), key=lambda profile: profile.address)

    def save_profiles(self, profiles: Iterable[NodeProfile]) -> None:
        self.update(lambda state: state.with_profiles(profiles))

    def forget_profiles(self, addresses: Iterable[int]) -> None:
        self.update(lambda state: state.without_nodes(addresses))

    def held(self) -> contextlib.AbstractContextManager[None]:
        return self._store.held()

    def saved_line(self) -> tuple[int, str] | None:
        line = self._state.line
        return None if line is None else (line.baudrate, line.parity)

    def save_line(self, baudrate: int, parity: str) -> None:
        if self.saved_line() != (baudrate, parity):
            self.update(lambda state: state.with_line(SavedLine(baudrate, parity)))

    def circuit_names(self, address: int) -> Mapping[int, str]:
        return self._state.circuit_names.get(address, MappingProxyType({}))

    def name_circuits(self, address: int, names: Mapping[int, str | None]) -> None:
        self.update(lambda state: state.with_circuit_names(address, names))


_Rule = tuple[Callable[[object], bool], str]


def _integer_in(values: range) -> _Rule:
    def test(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value in values

    return test, f"{values.start}-{values.stop - 1}"


def _nullable(rule: _Rule) -> _Rule:
    test, allowed = rule
    return (lambda value: value is None or test(value)), f"{allowed} or null"


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


_PROFILE_RULES: dict[str, _Rule] = {
    "address": _integer_in(UNIT_ADDRESSES),
    "serial": _integer_in(range(2**32)),
    "model": ((lambda value: value in ("A", "B", "C")), "A, B, C"),
    "device_id": _integer_in(range(2**16)),
    "firmware_rs": _integer_in(range(2**16)),
    "firmware_os": _integer_in(range(2**16)),
    # A node whose partner address is missing is its own board, even at 247.
    "primary_address": _integer_in(UNIT_ADDRESSES),
}
_OVERRIDE_RULES: dict[str, _Rule] = {
    # MAX_DEVICE_INSTANCE itself is the "any device" wildcard, not a usable identity.
    "object_instance": _nullable(_integer_in(range(MAX_DEVICE_INSTANCE))),
    "object_name": _nullable((_text, "a non-empty string")),
}
_ROUTER_RULES: dict[str, _Rule] = {
    "device_id_offset": _nullable(_integer_in(range(MAX_DEVICE_ID_OFFSET + 1))),
    "network": _nullable(_integer_in(VALID_NETWORKS)),
}
_MSTP_RULES: dict[str, _Rule] = {"max_master": _integer_in(range(1, 128))}
_LINE_RULES: dict[str, _Rule] = {
    "baudrate": ((lambda value: type(value) is int and value in BAUDRATES), ", ".join(map(str, BAUDRATES))),
    "parity": ((lambda value: value in PARITIES), ", ".join(PARITIES)),
}
_SNMP_ENGINE_RULES: dict[str, _Rule] = {
    # snmpEngineID: 5-32 octets (RFC 3411), in hex
    "id": (
        (lambda value: isinstance(value, str) and re.fullmatch(r"(?:[0-9a-f]{2}){5,32}", value) is not None),
        "5-32 octets in lowercase hex",
    ),
    "boots": _integer_in(range(1, 2**31)),
}
_OBJECT = re.compile(r"[a-z][a-z-]*,[0-9]{1,7}")
_SUBSCRIBER = re.compile(
    r"(?:(?P<network>[0-9]{1,5}):)?"
    r"(?:(?P<ip>[0-9.]{7,15}):(?P<port>[0-9]{1,5})|0x(?:[0-9a-f]{2})+|(?P<station>[0-9]{1,3}))"
)
_SUBSCRIPTION_RULES: dict[str, _Rule] = {
    "node": _nullable(_integer_in(UNIT_ADDRESSES)),
    "object": ((lambda value: isinstance(value, str) and _OBJECT.fullmatch(value) is not None), '"type,instance"'),
    "subscriber": ((lambda value: isinstance(value, str) and _subscriber(value)), "a BACnet address"),
    "process": _integer_in(range(2**32)),
    "confirmed": ((lambda value: isinstance(value, bool)), "true, false"),
    "lifetime": _integer_in(range(2**32)),
    "expires": ((lambda value: value is None or _utc(value) is not None), 'null or "YYYY-MM-DDTHH:MM:SSZ"'),
}
_TOP_KEYS = ("version", "profiles", "overrides", "router")
# absent from files written before them
_OPTIONAL_TOP_KEYS = ("database_revision", "line", "cov_subscriptions", "snmp_engine", "mstp", "circuit_names")
_DATABASE_REVISION = _integer_in(range(2**32))  # Database_Revision is an Unsigned
_ADDRESS_KEY = re.compile(r"[1-9][0-9]{0,2}")
_ADDRESS_KEYS_ALLOWED = f"allowed keys are Modbus addresses {UNIT_ADDRESSES[0]}-{UNIT_ADDRESSES[-1]}"
_CHANNEL_KEY = re.compile(r"[1-9][0-9]?")


def _show(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_object(
    where: str, value: object, keys: Iterable[str], problems: list[str], optional: Iterable[str] = ()
) -> dict[str, Any] | None:
    """Check that `value` is a JSON object with exactly `keys` and maybe `optional` ones; report
    what is missing or extra."""
    keys = tuple(keys)
    optional = tuple(optional)
    if not isinstance(value, dict):
        problems.append(f"{where or 'top level'} = {_show(value)}: allowed an object")
        return None
    for key in value:
        if key not in keys + optional:
            allowed = ", ".join(keys + optional)
            problems.append(f"{_join(where, key)} = {_show(value[key])}: allowed keys {allowed}")
    for key in keys:
        if key not in value:
            problems.append(f"{_join(where, key)} is missing")
    return value


def _check_fields(where: str, value: object, rules: dict[str, _Rule], problems: list[str]) -> bool:
    record = _check_object(where, value, rules, problems)
    if record is None:
        return False
    good = all(key in record for key in rules)
    for key, (test, allowed) in rules.items():
        if key in record and not test(record[key]):
            problems.append(f"{where}.{key} = {_show(record[key])}: allowed {allowed}")
            good = False
    return good


def _check_by_address(name: str, value: object, rules: dict[str, _Rule], problems: list[str]) -> dict[str, Any]:
    """Check a map of Modbus address -> record; return the records whose fields are all good."""
    if not isinstance(value, dict):
        problems.append(f"{name} = {_show(value)}: allowed an object keyed by Modbus address")
        return {}
    good = {}
    for key, record in value.items():
        where = f"{name}[{_show(key)}]"
        if not _ADDRESS_KEY.fullmatch(key) or int(key) not in UNIT_ADDRESSES:
            problems.append(f"{where}: {_ADDRESS_KEYS_ALLOWED}")
        elif _check_fields(where, record, rules, problems):
            good[key] = record
    return good


def _problems(data: object) -> list[str]:
    """Everything wrong with the decoded JSON of a state file; empty if it is good."""
    problems: list[str] = []
    top = _check_object("", data, _TOP_KEYS, problems, _OPTIONAL_TOP_KEYS)
    if top is None:
        return problems
    version = top.get("version")
    if "version" in top and (type(version) is not int or version != SCHEMA_VERSION):
        # A different schema: checking its fields against ours would only add noise.
        return [f"version = {_show(version)}: allowed {SCHEMA_VERSION}"]
    profiles = _check_by_address("profiles", top.get("profiles", {}), _PROFILE_RULES, problems)
    for key, profile in profiles.items():
        where = f"profiles[{_show(key)}]"
        if profile["address"] != int(key):
            problems.append(f"{where}.address = {profile['address']}: allowed {key} (its key)")
        elif profile["primary_address"] not in (profile["address"], profile["address"] - 1):
            problems.append(
                f"{where}.primary_address = {profile['primary_address']}: allowed "
                f"{profile['address'] - 1} or {profile['address']} "
                "(a board answers at its primary address and the next)"
            )
    _check_by_address("overrides", top.get("overrides", {}), _OVERRIDE_RULES, problems)
    if "router" in top:
        _check_fields("router", top["router"], _ROUTER_RULES, problems)
    test, allowed = _DATABASE_REVISION
    if "database_revision" in top and not test(top["database_revision"]):
        problems.append(f"database_revision = {_show(top['database_revision'])}: allowed {allowed}")
    if "line" in top:
        _check_fields("line", top["line"], _LINE_RULES, problems)
    if "circuit_names" in top:
        _check_circuit_names(top["circuit_names"], problems)
    if "snmp_engine" in top:
        _check_fields("snmp_engine", top["snmp_engine"], _SNMP_ENGINE_RULES, problems)
    if "mstp" in top:
        _check_fields("mstp", top["mstp"], _MSTP_RULES, problems)
    return problems


def _check_circuit_names(value: object, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"circuit_names = {_show(value)}: allowed an object keyed by Modbus address")
        return
    for key, names in value.items():
        where = f"circuit_names[{_show(key)}]"
        if not _ADDRESS_KEY.fullmatch(key) or int(key) not in UNIT_ADDRESSES:
            problems.append(f"{where}: {_ADDRESS_KEYS_ALLOWED}")
        elif not isinstance(names, dict):
            problems.append(f"{where} = {_show(names)}: allowed an object keyed by CT channel")
        else:
            for channel, name in names.items():
                if not _CHANNEL_KEY.fullmatch(channel) or int(channel) not in CIRCUITS:
                    problems.append(f"{where}[{_show(channel)}]: allowed keys are CT channels 1-46")
                elif (problem := circuit_name_problem(name)) is not None:
                    problems.append(f"{where}[{_show(channel)}] = {_show(name)}: allowed {problem}")


def _subscriber(text: str) -> bool:
    """Whether `text` is "ip:port" (on the BACnet/IP network), or "network:ip:port",
    "network:0xMAC" or "network:station" (an MS/TP station, its one-octet MAC in decimal; behind
    another router, or on the router's MS/TP port), as bacpypes3 writes addresses."""
    match = _SUBSCRIBER.fullmatch(text)
    if match is None or (match["station"] is not None and int(match["station"]) > 255):
        return False
    network, ip, port = match["network"], match["ip"], match["port"]
    if network is not None and int(network) not in VALID_NETWORKS:
        return False
    if ip is None:
        return network is not None  # a MAC is only meaningful with its network
    try:
        ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return int(port) in range(1, 65536)


def _utc(text: object) -> datetime | None:
    """The UTC time of a "YYYY-MM-DDTHH:MM:SSZ" text; None for anything else."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None


def _cov_subscriptions(value: object) -> tuple[tuple[SavedSubscription, ...], list[str]]:
    """The good entries of `cov_subscriptions`, and what is wrong with each of the others."""
    problems: list[str] = []
    if not isinstance(value, list):
        return (), [f"cov_subscriptions = {_show(value)}: allowed a list"]
    good = []
    for index, entry in enumerate(value):
        where = f"cov_subscriptions[{index}]"
        entry_problems: list[str] = []
        if not _check_fields(where, entry, _SUBSCRIPTION_RULES, entry_problems):
            problems.append("; ".join(entry_problems))  # one line an entry
            continue
        timed = entry["lifetime"] != 0
        if timed != (entry["expires"] is not None):
            problems.append(
                f"{where}.expires = {_show(entry['expires'])}: allowed a time when lifetime is not 0, else null"
            )
            continue
        good.append(SavedSubscription(**{**entry, "expires": _utc(entry["expires"])}))
    return tuple(good), problems


def _state_to_json(state: State) -> dict[str, Any]:
    line = {} if state.line is None else {"line": asdict(state.line)}
    cov = (
        {"cov_subscriptions": [_subscription_json(kept) for kept in state.cov_subscriptions]}
        if state.cov_subscriptions
        else {}
    )
    names = (
        {"circuit_names": {str(a): {str(c): name for c, name in n.items()} for a, n in state.circuit_names.items()}}
        if state.circuit_names
        else {}
    )
    engine = state.snmp_engine
    snmp_engine = {} if engine is None else {"snmp_engine": {"id": engine.id.hex(), "boots": engine.boots}}
    mstp = {} if state.mstp_max_master is None else {"mstp": {"max_master": state.mstp_max_master}}
    return {
        "version": SCHEMA_VERSION,
        "profiles": {str(address): asdict(profile) for address, profile in state.profiles.items()},
        "overrides": {str(address): asdict(override) for address, override in state.overrides.items()},
        "router": {"device_id_offset": state.device_id_offset, "network": state.network},
        "database_revision": state.database_revision,
        **line,
        **cov,
        **names,
        **snmp_engine,
        **mstp,
    }


def _subscription_json(kept: SavedSubscription) -> dict[str, Any]:
    expires = None if kept.expires is None else kept.expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**asdict(kept), "expires": expires}


def _state_from_json(data: dict[str, Any]) -> State:
    """Build a State from JSON that `_problems` found good."""
    return State(
        profiles={int(key): NodeProfile(**value) for key, value in data["profiles"].items()},
        overrides={int(key): DeviceOverride(**value) for key, value in data["overrides"].items()},
        device_id_offset=data["router"]["device_id_offset"],
        network=data["router"]["network"],
        database_revision=data.get("database_revision", 0),
        line=SavedLine(**data["line"]) if "line" in data else None,
        circuit_names={
            int(a): {int(c): name for c, name in names.items()} for a, names in data.get("circuit_names", {}).items()
        },
        snmp_engine=(
            SavedEngine(bytes.fromhex(data["snmp_engine"]["id"]), data["snmp_engine"]["boots"])
            if "snmp_engine" in data
            else None
        ),
        mstp_max_master=data["mstp"]["max_master"] if "mstp" in data else None,
    )
