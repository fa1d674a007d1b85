"""The OID index kept by object answers every lookup as a plain sorted list of OIDs would."""

from __future__ import annotations

import bisect
import itertools
import random

import pytest
from pysnmp.proto import rfc1905

from gateway.snmp.index import Entry, OidIndex

OBJECTS = [
    (1, 3, 6, 1, 2, 1, 1, 1),
    (1, 3, 6, 1, 2, 1, 1, 3),
    (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 5, 1, 1, 3),
    (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 5, 1, 1, 4),
    (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 7, 1, 1, 2),
]
ROWS = [[(0,)], [(0,)], [(1, 1), (1, 2), (1, 42), (200, 1)], [(1, 1), (1, 2), (1, 42), (200, 1)], [(1,), (2,), (247,)]]


def plain(value: object) -> object:
    return value


def index_and_oids() -> tuple[OidIndex, list[tuple[int, ...]]]:
    readers = {oid: lambda suffix, oid=oid: oid + suffix for oid in OBJECTS}  # one an object, for all its rows
    entries = [Entry(oid, suffix, readers[oid], plain) for oid, suffixes in zip(OBJECTS, ROWS) for suffix in suffixes]
    random.Random(1).shuffle(entries)
    return OidIndex(entries), sorted(entry.oid for entry in entries)


def queries(oids: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Every served OID, every prefix of one, and each of those with a sub-identifier changed or added."""
    found = {oid[:length] for oid in oids for length in range(1, len(oid) + 1)}
    for oid in list(found):
        found |= {oid[:-1] + (oid[-1] + delta,) for delta in (-1, 1) if oid[-1] + delta >= 0}
        found |= {oid + (0,), oid + (2**32 - 1, 2**40), oid + (999,)}
    return sorted(found | {(0,), (2,), (1, 3, 6, 1, 4, 1, 3833, 1, 30, 1, 6)})


def test_positions_follow_the_order_of_the_oids() -> None:
    index, oids = index_and_oids()
    assert len(index) == len(oids)
    assert [index.oid(at) for at in range(len(index))] == oids
    assert [index.read(at) for at in range(len(index))] == oids  # each position reads its own instance
    for query in queries(oids):
        expected = oids.index(query) if query in oids else None
        assert index.position(query) == expected, query
        assert index.position_after(query) == bisect.bisect_right(oids, query), query


def test_a_miss_is_no_such_instance_inside_an_object_and_no_such_object_elsewhere() -> None:
    index, oids = index_and_oids()
    for query in queries(oids):
        if query in oids:
            assert index.get(query) == query
        elif any(query[: len(obj)] == obj and len(query) > len(obj) for obj in OBJECTS):
            assert index.get(query) is rfc1905.noSuchInstance, query
        else:
            assert index.get(query) is rfc1905.noSuchObject, query


def test_rows_are_kept_once_for_objects_that_share_them() -> None:
    index, _ = index_and_oids()
    branch_columns = [index.entry(obj + (1, 1)) for obj in OBJECTS[2:4]]
    assert [entry.suffix for entry in branch_columns if entry] == [(1, 1), (1, 1)]
    assert index._suffixes[2] is index._suffixes[3]


@pytest.mark.parametrize(
    "entries",
    [
        [
            Entry((1, 2), (1,), lambda suffix: 1, plain),
            Entry((1, 2, 1), (0,), lambda suffix: 2, plain),
        ],  # nested objects
        [Entry((1, 2), (1,), plain, plain), Entry((1, 2), (1,), plain, plain)],  # one OID twice
        [Entry((1, 2), (1,), lambda suffix: 1, plain), Entry((1, 2), (2,), lambda suffix: 2, plain)],  # two readers
    ],
)
def test_an_index_that_cannot_be_ordered_is_refused(entries) -> None:
    with pytest.raises(ValueError):
        OidIndex(entries)


def test_bulk_walks_columns_side_by_side_to_the_end() -> None:
    index, oids = index_and_oids()
    rows = index.bulk([index.position_after(OBJECTS[2]), index.position_after(OBJECTS[4])], 3)
    assert [(column, None if served is None else index.oid(served[0])) for column, served in rows] == list(
        itertools.chain(
            *zip([(0, OBJECTS[2] + suffix) for suffix in ROWS[2][:3]], [(1, OBJECTS[4] + suffix) for suffix in ROWS[4]])
        )
    )
