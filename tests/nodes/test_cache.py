"""The node cache (gateway/nodes/cache.py): what a read of raw registers makes of the readings."""

from __future__ import annotations

import random
from dataclasses import replace

from gateway.nodes.cache import MAX_EXPONENT, NodeCache, Quality, Reading
from gateway.nodes.plan import LineCost, Read, poll_plan
from gateway.pointmap import Encoding, Point, load, signed

PM = load()
CURRENT_1 = PM.find("current", group="branch", channel=1)  # register 1336, scaled by register 1000


def cache() -> NodeCache:
    return NodeCache(PM, "A", poll_plan(PM, "A", LineCost(11 / 19200, 0.007)))


def test_a_read_decodes_with_the_scale_register_read_with_it() -> None:
    node = cache()
    assert CURRENT_1.scale_register == 1000
    changes = node.store(1000, [0xFFFF], 1.0).pairs()  # scale -1; the current itself not read yet
    assert CURRENT_1 not in changes and node.reading(CURRENT_1).quality is Quality.UNKNOWN
    node.store(1336, [123], 2.0)
    reading = node.reading(CURRENT_1)
    assert (reading.value, reading.quality, reading.timestamp) == (12.3, Quality.GOOD, 2.0)
    changes = node.store(1000, [0xFFFE], 3.0).pairs()  # a new scale changes every value it scales
    assert changes[CURRENT_1][1].value == 1.23


def test_a_garbled_scale_register_gives_no_value_and_no_error() -> None:
    node = cache()
    node.store(1336, [123], 1.0)
    for garbage in (900, 0x8000, 10):  # 10^900 overflows a float; 10^10 is no meter's scale
        changes = node.store(1000, [garbage], 2.0).pairs()
        assert changes[CURRENT_1][1].quality is Quality.NO_DATA
        assert node.reading(CURRENT_1).value is None
        assert node.scale_of(CURRENT_1) is None  # so a write of it is refused, not miscomputed
        node.store(1000, [0xFFFF], 3.0)
        assert node.reading(CURRENT_1).value == 12.3


def test_readings_keep_their_value_types_and_one_object_until_they_change() -> None:
    plan = poll_plan(PM, "A", LineCost(11 / 19200, 0.007))
    node = NodeCache(PM, "A", replace(plan, slow=(*plan.slow, Read(7, 64))))  # the location text polled too
    serial, location = PM.find("serial_number", group="identity"), PM.find("location", group="identity")
    node.store(1, [0x0001, 0x0002], 1.0)
    node.store(7, [0x4142, 0x4300] + [0] * 62, 1.0)
    node.store(1000, [0xFFFF], 1.0)
    node.store(1336, [123], 2.0)
    assert node.reading(serial).value == 0x10002 and isinstance(node.reading(serial).value, int)
    assert node.reading(location).value == "ABC"
    first = node.reading(CURRENT_1)
    assert (first.value, first.quality, first.timestamp) == (12.3, Quality.GOOD, 2.0)
    assert node.reading(CURRENT_1) is first and node.readings[CURRENT_1.register] is first  # made once
    node.store(1336, [0x8000], 3.0)  # the meter has no value now
    gone = node.reading(CURRENT_1)
    assert gone is not first and (gone.value, gone.quality, gone.timestamp) == (None, Quality.NO_DATA, 3.0)
    node.mark_stale()
    assert (node.reading(CURRENT_1).quality, node.reading(serial).value) == (Quality.STALE, 0x10002)
    assert node.reading(location) == Reading("ABC", Quality.STALE, 1.0)
    assert len(node.readings) == len(PM.for_model("A")) and set(node.readings) >= {1, 7, 1336}


def test_current_agrees_with_the_readings_and_keeps_no_reading_object() -> None:
    node = cache()
    place = node._places[CURRENT_1.register]
    assert node.current(CURRENT_1.register) == (None, Quality.UNKNOWN)
    node.store(1, [0x0001, 0x0002], 1.0)  # the serial number: an int
    node.store(1000, [0xFFFF], 1.0)
    node.store(1336, [123, 0x8000], 2.0)  # a value, and channel 2 without one
    assert node.current(CURRENT_1.register) == (12.3, Quality.GOOD)
    assert place not in node._readings.made  # what SNMP and /metrics read leaves nothing behind
    for stale in (False, True):
        if stale:
            node.mark_stale()
        for point in PM.for_model("A"):
            reading = node.reading(point)
            assert node.current(point.register) == (reading.value, reading.quality), point
    assert node.current(PM.find("serial_number", group="identity").register) == (0x10002, Quality.STALE)


def _word(node: NodeCache, register: int) -> int | None:
    found = node.word(register)
    return None if found is None else found[0]


def _decoded(node: NodeCache, point: Point) -> tuple[object, Quality, float] | None:
    """A point's reading as its raw registers give it now; None while a register or its scale is unread."""
    found = node.block(point.registers)
    if found is None:
        return None
    words, timestamp = found
    if point.exponent is None and point.scale_register is not None:
        scale_word = node.word(point.scale_register)
        if scale_word is None:
            return None
        if abs(signed(scale_word[0])) > MAX_EXPONENT:
            return None, Quality.NO_DATA, timestamp
    value = point.decode(words, node.scale_of(point) or 0)
    return (
        value,
        Quality.NO_DATA if value is None and point.encoding is not Encoding.STRING else Quality.GOOD,
        timestamp,
    )


def test_every_read_leaves_each_reading_as_its_registers_give_it_and_reports_exactly_what_changed() -> None:
    """Reads of the plan's blocks, of single registers (write read-backs) and across blocks, with
    words that mostly stay, scale registers that change, no-data words and the node going stale:
    after each, a point the read touched reads as its raw registers give it (else as it was), and
    the changes are exactly the points whose value or quality moved."""
    rng = random.Random(7)
    plan = poll_plan(PM, "A", LineCost(11 / 115200, 0.007))
    node = NodeCache(PM, "A", plan)
    points = PM.for_model("A")
    scales = sorted({p.scale_register for p in points if p.scale_register is not None})
    raw: dict[int, int] = {}
    shapes = [*plan.reads, *(Read(s, 1) for s in scales), Read(1330, 20), Read(1337, 3)]
    for step in range(400):
        read = rng.choice(shapes)
        if step % 100 == 99:
            node.mark_stale()
        words = []
        for register in read.registers:
            if register not in raw or rng.random() < 0.1:
                choice = rng.random()
                raw[register] = (
                    rng.choice([0xFFFF, 0xFFFE, 0, 1, 900])
                    if register in scales
                    else 0x8000
                    if choice < 0.1
                    else rng.randrange(0x10000)
                )
            words.append(raw[register])
        before = {point: node.reading(point) for point in points}
        scale_words = {register: _word(node, register) for register in scales}
        changes = node.store(read.start, words, float(step)).pairs()
        for point in points:
            was = before[point]
            touched = any(r in read.registers for r in point.registers) or (
                point.scale_register in read.registers
                and scale_words[point.scale_register] != _word(node, point.scale_register)
            )
            expected = (_decoded(node, point) if touched else None) or (was.value, was.quality, was.timestamp)
            now = node.reading(point)
            assert (now.value, now.quality, now.timestamp) == expected, (step, read, point)
            if (now.value, now.quality) != (was.value, was.quality):
                assert changes.pop(point) == (was, now), (step, read, point)
        assert not changes, (step, read)


def test_a_read_back_of_a_register_no_point_of_the_model_holds_is_kept_and_changes_nothing() -> None:
    # A model C plan reads across registers only model A has a point in; a pass-through write to
    # one is read back into the cache like any other.
    plan = poll_plan(PM, "C", LineCost(11 / 19200, 0.007))
    node = NodeCache(PM, "C", plan)
    pointless = [r for read in plan.reads for r in read.registers if "C" not in getattr(PM.point_at(r), "models", ())]
    assert pointless
    for register in pointless:
        assert len(node.store(register, [7], 1.0)) == 0
        assert node.word(register) == (7, 1.0)
