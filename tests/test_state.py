"""The persistent state file: round trip, strict loading, atomic saving."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pytest
import structlog

from gateway.errors import StateError
from gateway.nodes.profile import NodeProfile
from gateway.state import DeviceOverride, SavedEngine, SavedLine, SavedSubscription, State, StateStore

ROOT = Path(__file__).resolve().parent.parent


def board(primary: int, serial: int = 0x1234, model: Literal["A", "B", "C"] = "A") -> list[NodeProfile]:
    """Both addresses of one BCPM board."""
    device_id = {"A": 15172, "B": 15171, "C": 15170}[model]
    return [NodeProfile(address, serial, model, device_id, 1030, 2010, primary) for address in (primary, primary + 1)]


def sample_state() -> State:
    return (
        State()
        .with_profiles([*board(1), *board(3, serial=0x5678, model="C")])
        .with_override(2, DeviceOverride(object_instance=1002, object_name="PDU_A_panel_2"))
        .with_override(3, DeviceOverride(object_name="PDU_B"))
        .with_router(device_id_offset=60000)
        .with_database_revision(4)
    )


def test_a_state_survives_a_save_and_a_load(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    state = sample_state()

    store.save(state)

    assert store.load() == state


def test_the_file_has_the_documented_json_layout(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(sample_state())

    data = json.loads(store.path.read_text())

    assert data["version"] == 1
    assert list(data["profiles"]) == ["1", "2", "3", "4"]
    assert data["profiles"]["4"] == {
        "address": 4,
        "serial": 0x5678,
        "model": "C",
        "device_id": 15170,
        "firmware_rs": 1030,
        "firmware_os": 2010,
        "primary_address": 3,
    }
    assert data["overrides"]["3"] == {"object_instance": None, "object_name": "PDU_B"}
    assert data["router"] == {"device_id_offset": 60000, "network": None}
    assert data["database_revision"] == 4


def test_a_state_file_from_before_the_database_revision_loads_at_revision_0(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.path.write_bytes(document())

    state = store.load()

    assert (list(state.profiles), state.database_revision) == ([3], 0)
    store.save(state.with_database_revision(1))
    assert store.load().database_revision == 1


@pytest.mark.parametrize(
    ("key", "change", "saved"),
    [
        ("line", lambda state: state.with_line(SavedLine(9600, "E")), {"baudrate": 9600, "parity": "E"}),
        (
            "snmp_engine",
            lambda state: state.with_snmp_engine(SavedEngine(bytes.fromhex("80000ef9050102030405060708"), 3)),
            {"id": "80000ef9050102030405060708", "boots": 3},
        ),
    ],
)
def test_a_later_part_is_kept_and_a_file_written_before_it_still_loads(
    tmp_path: Path, key: str, change: Callable[[State], State], saved: dict[str, object]
) -> None:
    """The line settings found, and the SNMP engine, each absent until there is one."""
    store = StateStore(tmp_path / "state.json")
    store.path.write_bytes(document())  # written before the key existed
    old = store.load()
    assert getattr(old, key) is None
    store.save(old)
    assert key not in json.loads(store.path.read_text())  # not written until there is one

    store.save(change(old))

    assert json.loads(store.path.read_text())[key] == saved
    assert store.load() == change(old)


KEPT = (
    SavedSubscription(
        1, "analog-input,1336", "192.168.1.50:47808", 7, True, 600, datetime(2026, 12, 6, 23, 30, 5, tzinfo=UTC)
    ),
    SavedSubscription(None, "analog-value,2", "9:0x0a0b", 4194303, False, 0, None),
)


def test_cov_subscriptions_are_kept_as_documented_and_a_file_written_before_them_still_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.path.write_bytes(document())  # no "cov_subscriptions": written before the key existed
    old = store.load()
    assert old.cov_subscriptions == ()

    store.save(old.with_cov_subscriptions(KEPT))

    assert json.loads(store.path.read_text())["cov_subscriptions"] == [
        {
            "node": 1,
            "object": "analog-input,1336",
            "subscriber": "192.168.1.50:47808",
            "process": 7,
            "confirmed": True,
            "lifetime": 600,
            "expires": "2026-12-06T23:30:05Z",
        },
        {
            "node": None,
            "object": "analog-value,2",
            "subscriber": "9:0x0a0b",
            "process": 4194303,
            "confirmed": False,
            "lifetime": 0,
            "expires": None,
        },
    ]
    assert store.load() == old.with_cov_subscriptions(KEPT)


def test_a_garbled_cov_subscription_is_skipped_with_a_line_naming_it_and_the_rest_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(State().with_profiles(board(3)).with_cov_subscriptions(KEPT))
    data = json.loads(store.path.read_text())
    good = data["cov_subscriptions"]
    data["cov_subscriptions"] = [
        {**good[0], "subscriber": "somewhere"},
        good[1],
        "garbage",
        {**good[0], "lifetime": 0},  # indefinite, yet an end
        {**good[0], "node": 248, "process": -1},
        {key: value for key, value in good[0].items() if key != "confirmed"},
        {**good[0], "expires": "yesterday"},
    ]
    store.path.write_text(json.dumps(data))
    with structlog.testing.capture_logs() as logs:
        state = store.load()
    assert state.cov_subscriptions == KEPT[1:]
    assert list(state.profiles) == [3, 4]
    assert [(log["event"], log["detail"]) for log in logs] == [
        ("state file cov subscription skipped", detail)
        for detail in (
            'cov_subscriptions[0].subscriber = "somewhere": allowed a BACnet address',
            'cov_subscriptions[2] = "garbage": allowed an object',
            'cov_subscriptions[3].expires = "2026-12-06T23:30:05Z": allowed a time when lifetime is not 0, else null',
            "cov_subscriptions[4].node = 248: allowed 1-247 or null; "
            "cov_subscriptions[4].process = -1: allowed 0-4294967295",
            "cov_subscriptions[5].confirmed is missing",
            'cov_subscriptions[6].expires = "yesterday": allowed null or "YYYY-MM-DDTHH:MM:SSZ"',
        )
    ]
    data["cov_subscriptions"] = {"not": "a list"}
    store.path.write_text(json.dumps(data))
    with structlog.testing.capture_logs() as logs:
        assert store.load().cov_subscriptions == ()
    assert logs[0]["detail"] == 'cov_subscriptions = {"not": "a list"}: allowed a list'


def test_a_missing_state_file_loads_as_an_empty_state(tmp_path: Path) -> None:
    state = StateStore(tmp_path / "nothing-here.json").load()

    assert state == State()
    assert (dict(state.profiles), dict(state.overrides)) == ({}, {})
    assert (state.device_id_offset, state.network) == (None, None)


def test_save_creates_the_parent_folder(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "var" / "lib" / "bcpm-gateway" / "state.json")

    store.save(sample_state())

    assert store.load() == sample_state()


GOOD_PROFILE = {
    "address": 3,
    "serial": 1,
    "model": "A",
    "device_id": 15172,
    "firmware_rs": 1,
    "firmware_os": 1,
    "primary_address": 3,
}


def document(**changes: object) -> bytes:
    data: dict[str, object] = {
        "version": 1,
        "profiles": {"3": GOOD_PROFILE},
        "overrides": {},
        "router": {"device_id_offset": None, "network": None},
    }
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (document()[:40], "not valid JSON"),
        (b"\xff\xfe\x00garbage\x81", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"[1, 2]", "top level = [1, 2]: allowed an object"),
        (document(version=2), "version = 2: allowed 1"),
        (document(version=True), "version = true: allowed 1"),
        (
            document(profiles={"3": {**GOOD_PROFILE, "model": "Z"}}),
            'profiles["3"].model = "Z": allowed A, B, C',
        ),
        (
            document(profiles={"3": {**GOOD_PROFILE, "serial": "1"}}),
            'profiles["3"].serial = "1": allowed 0-4294967295',
        ),
        (
            document(profiles={"3": {**GOOD_PROFILE, "address": 4}}),
            'profiles["3"].address = 4: allowed 3',
        ),
        (
            document(profiles={"3": {**GOOD_PROFILE, "primary_address": 1}}),
            'profiles["3"].primary_address = 1: allowed 2 or 3',
        ),
        (
            document(profiles={"0": GOOD_PROFILE}),
            'profiles["0"]: allowed keys are Modbus addresses',
        ),
        (
            document(profiles={"3": {k: v for k, v in GOOD_PROFILE.items() if k != "serial"}}),
            'profiles["3"].serial is missing',
        ),
        (
            document(overrides={"3": {"object_instance": 4194303, "object_name": None}}),
            'overrides["3"].object_instance = 4194303: allowed 0-4194302 or null',
        ),
        (
            document(router={"device_id_offset": None, "network": 0}),
            "router.network = 0: allowed 1-65534 or null",
        ),
        (document(extra=1), "extra = 1: allowed keys version, profiles, overrides, router, database_revision, line"),
        *(
            (
                document(profiles={"3": {**GOOD_PROFILE, key: 65536}}),
                f'profiles["3"].{key} = 65536: allowed 0-65535',
            )
            for key in ("device_id", "firmware_rs", "firmware_os")
        ),
        (document(database_revision=-1), "database_revision = -1: allowed 0-4294967295"),
        (document(database_revision="2"), 'database_revision = "2": allowed 0-4294967295'),
        (document(line={"baudrate": 4800, "parity": "N"}), "line.baudrate = 4800: allowed 9600, 19200, 38400"),
        (document(line={"baudrate": 9600, "parity": "X"}), 'line.parity = "X": allowed N, E, O'),
        (document(line={"baudrate": 9600}), "line.parity is missing"),
        (document(line=None), "line = null: allowed an object"),
        (document(snmp_engine={"id": "80000ef905", "boots": 0}), "snmp_engine.boots = 0: allowed 1-2147483647"),
        (document(snmp_engine={"id": "80000ef9", "boots": 1}), 'snmp_engine.id = "80000ef9": allowed 5-32 octets'),
        (document(snmp_engine={"id": "80000EF905", "boots": 1}), "allowed 5-32 octets in lowercase hex"),
        (document(snmp_engine={"id": "80000ef905"}), "snmp_engine.boots is missing"),
    ],
)
def test_a_broken_state_file_is_refused_with_its_name_and_the_problem_and_left_untouched(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)

    with pytest.raises(StateError) as caught:
        StateStore(path).load()

    assert f"state file {path}: " in str(caught.value)
    assert problem in str(caught.value)
    assert path.read_bytes() == content


def test_every_problem_of_a_state_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(
        document(
            profiles={"3": {**GOOD_PROFILE, "model": "Z", "firmware_os": -1}},
            router={"device_id_offset": 4194100, "network": None},
        )
    )

    with pytest.raises(StateError) as caught:
        StateStore(path).load()

    lines = str(caught.value).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"state file {path}: ") for line in lines)


def test_a_failed_rename_leaves_the_old_file_intact_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(sample_state())
    before = store.path.read_bytes()

    def refuse(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(StateError, match="No space left on device"):
        store.save(State())
    monkeypatch.undo()

    assert store.path.read_bytes() == before
    assert store.load() == sample_state()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_syncs_the_new_file_before_the_rename_and_the_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(State())
    steps: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        steps.append("sync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "sync file")
        real_fsync(fd)

    def replace(source: str, target: str) -> None:
        steps.append("rename")
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.save(sample_state())

    assert steps == ["sync file", "rename", "sync folder"]


def test_a_crash_before_the_rename_keeps_the_old_state_and_the_next_save_cleans_up(
    tmp_path: Path,
) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(sample_state())
    before = store.path.read_bytes()
    # A separate process dies at the rename as a power cut would: no cleanup code runs.
    crash = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from gateway.state import State, StateStore
        os.replace = lambda *args: os._exit(17)
        StateStore(Path({str(store.path)!r})).save(State())
        """
    )
    result = subprocess.run([sys.executable, "-c", crash], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 17
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "state.json"]
    assert len(leftovers) == 1, "the crashed save should have left its temp file"

    assert store.path.read_bytes() == before
    assert store.load() == sample_state()
    store.save(State())
    assert store.load() == State()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_save_refuses_a_state_it_could_not_load_again_and_writes_nothing(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save(sample_state())
    before = store.path.read_bytes()

    with pytest.raises(StateError, match="router.network = 0"):
        store.save(sample_state().with_router(network=0))

    assert store.path.read_bytes() == before


def test_a_state_cannot_be_changed_through_the_mappings_it_was_built_from() -> None:
    profiles = {profile.address: profile for profile in board(1)}
    state = State(profiles=profiles)

    profiles.clear()

    assert list(state.profiles) == [1, 2]
    with pytest.raises(TypeError):
        state.profiles[5] = board(5)[0]  # type: ignore[index]


def test_a_profile_filed_under_another_address_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="address 2 filed under 7"):
        State(profiles={7: board(1)[1]})


def test_with_router_changes_only_what_it_is_given() -> None:
    state = State().with_router(device_id_offset=60000, network=7)

    assert state.with_router(network=9) == State(device_id_offset=60000, network=9)
    assert state.with_router(device_id_offset=None) == State(network=7)


def test_the_state_keeps_the_database_revision_and_leaves_raising_it_to_the_bacnet_face() -> None:
    state = sample_state()

    changed = [
        state.with_profiles(board(5)),
        state.without_nodes([4]),
        state.with_override(1, DeviceOverride(object_name="PDU_C")),
        state.with_router(device_id_offset=61000, network=9),
    ]

    assert [each.database_revision for each in changed] == [4] * 4
    assert state.with_database_revision(2**32 - 1).database_revision == 2**32 - 1
    # when it goes up: tests/bacnet/test_revision.py


def test_with_profiles_adds_new_nodes_and_keeps_the_known_ones() -> None:
    state = sample_state().with_profiles(board(5))

    assert list(state.profiles) == [1, 2, 3, 4, 5, 6]
    assert list(state.overrides) == [2, 3]


def test_with_profiles_replaces_the_profile_of_a_known_address() -> None:
    state = sample_state().with_profiles([NodeProfile(3, 0x9999, "A", 15172, 1, 1, primary_address=3)])

    assert list(state.profiles) == [1, 2, 3, 4]
    assert state.profiles[3].serial == 0x9999


def test_without_nodes_forgets_their_profiles_and_overrides() -> None:
    state = sample_state().without_nodes([2, 3])

    assert list(state.profiles) == [1, 4]
    assert list(state.overrides) == []


def test_a_lone_node_at_address_247_is_its_own_board_and_is_saved(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    state = State().with_profiles([NodeProfile(247, 9, "B", 15171, 1, 1, primary_address=247)])

    store.save(state)

    assert store.load() == state


def test_an_override_with_nothing_set_removes_the_override() -> None:
    state = sample_state().with_override(3, DeviceOverride())

    assert list(state.overrides) == [2]


def test_a_held_state_file_is_refused_to_a_second_holder_with_the_holders_process(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    with store.held():
        with pytest.raises(StateError, match=rf"in use by a running gateway \(process {os.getpid()}\)"):
            with StateStore(tmp_path / "state.json").held():
                pass
    with store.held():  # released
        pass


def test_a_lock_that_cannot_be_made_is_a_state_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")  # where the state folder should be
    with pytest.raises(StateError, match=r"cannot create its lock .*state\.json\.lock"):
        with StateStore(tmp_path / "file" / "state.json").held():
            pass


def test_circuit_names_are_kept_as_documented_and_a_file_written_before_them_still_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    state = sample_state().with_circuit_names(1, {7: "Rack A12 PDU A", 43: "Mains L1"})
    store.save(state)
    assert json.loads(store.path.read_text())["circuit_names"] == {"1": {"7": "Rack A12 PDU A", "43": "Mains L1"}}
    assert store.load() == state
    store.path.write_bytes(document())  # written before them
    assert store.load().circuit_names == {}


def test_naming_circuits_keeps_the_others_and_removes_empty_ones() -> None:
    state = State().with_circuit_names(1, {7: "Rack A12", 8: "Rack A13"})
    renamed = state.with_circuit_names(1, {7: "Rack B1", 8: None}).with_circuit_names(2, {1: ""})
    assert renamed.circuit_names == {1: {7: "Rack B1"}}  # node 2 named nothing: no entry
    assert state.without_nodes([1]).circuit_names == {}  # a node forgotten takes its names along


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        ({"1": {"47": "x"}}, 'circuit_names["1"]["47"]: allowed keys are CT channels 1-46'),
        ({"248": {"1": "x"}}, 'circuit_names["248"]: allowed keys are Modbus addresses 1-247'),
        ({"1": {"1": ""}}, 'circuit_names["1"]["1"] = "": allowed a name of 1-40 characters'),
        ({"1": {"1": "tab\there"}}, "allowed printable ASCII characters (spaces inside only)"),
        ({"1": {"1": "x" * 41}}, "allowed a name of 1-40 characters"),
        ({"1": ["x"]}, 'circuit_names["1"] = ["x"]: allowed an object keyed by CT channel'),
    ],
)
def test_a_bad_circuit_name_is_refused_with_where_it_is(tmp_path: Path, names: object, problem: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(document(circuit_names=names))
    with pytest.raises(StateError, match="circuit_names") as caught:
        StateStore(path).load()
    assert problem in str(caught.value)
