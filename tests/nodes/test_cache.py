"""The node cache (gateway/nodes/cache.py): what a read of raw registers makes of the readings."""

from __future__ import annotations

from gateway.nodes.cache import NodeCache, Quality
from gateway.nodes.plan import LineCost, poll_plan
from gateway.pointmap import load

PM = load()
CURRENT_1 = PM.find("current", group="branch", channel=1)  # register 1336, scaled by register 1000


def cache() -> NodeCache:
    return NodeCache(PM, "A", poll_plan(PM, "A", LineCost(11 / 19200, 0.007)))


def test_a_read_decodes_with_the_scale_register_read_with_it() -> None:
    node = cache()
    assert CURRENT_1.scale_register == 1000
    changes = node.store(1000, [0xFFFF], 1.0)  # scale -1; the current itself not read yet
    assert CURRENT_1 not in changes and node.reading(CURRENT_1).quality is Quality.UNKNOWN
    node.store(1336, [123], 2.0)
    reading = node.reading(CURRENT_1)
    assert (reading.value, reading.quality, reading.timestamp) == (12.3, Quality.GOOD, 2.0)
    changes = node.store(1000, [0xFFFE], 3.0)  # a new scale changes every value it scales
    assert changes[CURRENT_1][1].value == 1.23


def test_a_garbled_scale_register_gives_no_value_and_no_error() -> None:
    node = cache()
    node.store(1336, [123], 1.0)
    for garbage in (900, 0x8000, 10):  # 10^900 overflows a float; 10^10 is no meter's scale
        changes = node.store(1000, [garbage], 2.0)
        assert changes[CURRENT_1][1].quality is Quality.NO_DATA
        assert node.reading(CURRENT_1).value is None
        assert node.scale_of(CURRENT_1) is None  # so a write of it is refused, not miscomputed
        node.store(1000, [0xFFFF], 3.0)
        assert node.reading(CURRENT_1).value == 12.3
