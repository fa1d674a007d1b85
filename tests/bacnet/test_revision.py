"""When the BACnet devices' Database_Revision goes up (gateway/bacnet/identities.py): with every
change a client's copy of the device database must notice, and with nothing else. The running
face raises it for a node found or forgotten (tests/bacnet/test_device_objects.py,
tests/test_lifecycle.py); these are the rules for what it saves."""

from __future__ import annotations

from gateway.bacnet.identities import forgotten, revised, with_identity, with_setting
from gateway.bacnet.plan import ROUTER_SETTINGS
from gateway.nodes.profile import NodeProfile
from gateway.state import DeviceOverride, State

OFFSET, NETWORK = ROUTER_SETTINGS


def known() -> State:
    profiles = [NodeProfile(address, 0x1234, "A", 15172, 1030, 2010, 1) for address in (1, 2)]
    return (
        State()
        .with_profiles(profiles)
        .with_override(2, DeviceOverride(object_instance=1002, object_name="PDU_A_panel_2"))
        .with_router(device_id_offset=60000)
        .with_database_revision(7)
    )


def test_the_revision_goes_up_with_the_devices_names_ids_and_number_only() -> None:
    state = known()

    changes = {
        "a node forgotten": forgotten(state, [2]),
        "a name written": with_identity(state, 1, object_name="PDU_C"),
        "an ID written": with_identity(state, 2, object_instance=1003),
        "the device ID offset": with_setting(state, OFFSET, 61000),
    }
    same = {
        "an unknown node forgotten": forgotten(state, [9]),
        "the same name written": with_identity(state, 2, object_name="PDU_A_panel_2"),
        "the same offset": with_setting(state, OFFSET, 60000),
        "the network number": with_setting(state, NETWORK, 9),
    }

    assert {what: changed.database_revision for what, changed in changes.items()} == dict.fromkeys(changes, 8)
    assert {what: kept.database_revision for what, kept in same.items()} == dict.fromkeys(same, 7)


def test_each_rule_saves_its_change_with_the_revision() -> None:
    state = known()

    assert list(forgotten(state, [2]).profiles) == [1] and 2 not in forgotten(state, [2]).overrides
    assert with_identity(state, 1, object_name="PDU_C").overrides[1] == DeviceOverride(object_name="PDU_C")
    assert with_identity(state, 2, object_name="B").overrides[2] == DeviceOverride(1002, "B")
    assert (with_setting(state, OFFSET, 61000).device_id_offset, with_setting(state, NETWORK, 9).network) == (61000, 9)


def test_the_revision_is_an_unsigned32_that_wraps_to_0_only_after_its_last_value() -> None:
    assert revised(State().with_database_revision(2**31 - 1)).database_revision == 2**31
    assert with_identity(State().with_database_revision(2**31 - 1), 1, object_name="PDU_C").database_revision == 2**31
    assert revised(State().with_database_revision(2**32 - 1)).database_revision == 0  # still a change to a client
