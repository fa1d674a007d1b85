"""The master node state machine (ASHRAE 135 clause 9.5.6) on a line in simulated time: the token ring
forms and keeps itself, new and vanished stations are found, replies go in the reply slot or after
Reply Postponed, and a lost token is made again."""

from __future__ import annotations

from gateway.mstp import Frame, FrameType, Outgoing, Received, State
from gateway.mstp.master import N_POLL, REPLY_DELAY, T_REPLY_TIMEOUT
from tests.mstp.stations import read_property, read_value
from tests.mstp.virtual_line import VirtualLine


def ring(line: VirtualLine) -> dict[int, int]:
    return {address: station.node.next_station for address, station in line.stations.items()}


def test_three_masters_form_a_ring_and_pass_the_token_in_turn() -> None:
    line = VirtualLine()
    for address in (1, 3, 7):
        line.add(address, max_master=10)
    line.run(5.0)
    assert ring(line) == {1: 3, 3: 7, 7: 1}
    counts = [line.stations[a].node.counts for a in (1, 3, 7)]
    assert all(c.tokens_received > 100 for c in counts)
    assert max(c.tokens_received for c in counts) - min(c.tokens_received for c in counts) <= 1
    # Once the ring runs, nobody loses the token: only the start made one (station 1, the lowest).
    assert [c.tokens_lost for c in counts] == [1, 1, 1]
    tokens = [frame for _, frame in line.sent if frame.kind == FrameType.TOKEN]
    assert {(f.source, f.destination) for f in tokens[-30:]} == {(1, 3), (3, 7), (7, 1)}
    rotation = line.stations[3].node.rotation  # three tokens of 8 octets at 38400 baud, and now and then a poll
    assert rotation is not None and 3 * 8 * 10 / 38400 <= rotation < 0.1


def test_a_lone_master_declares_itself_sole_master_and_still_sends() -> None:
    line = VirtualLine()
    station = line.add(5, max_master=10)
    line.run(2.0)
    assert station.node.sole_master and station.node.next_station == 5
    line.enqueue(5, Outgoing(255, b"\x01\x00\x10\x08", expecting_reply=False))  # an unconfirmed broadcast
    line.run(0.5)
    assert station.node.counts.npdus_sent == 1
    # It keeps polling for masters, one address every N_POLL tokens.
    polled = {frame.destination for _, frame in line.sent if frame.kind == FrameType.POLL_FOR_MASTER}
    assert polled == set(range(11)) - {5}


def test_a_station_that_joins_is_found_by_the_maintenance_poll_and_one_that_leaves_is_passed_over() -> None:
    line = VirtualLine()
    line.add(2, max_master=20)
    line.add(9, max_master=20)
    line.run(2.0)
    assert ring(line) == {2: 9, 9: 2}
    line.add(5, max_master=20)  # a controller powered up between them
    line.run(N_POLL * 0.05)
    assert ring(line) == {2: 5, 5: 9, 9: 2}
    line.remove(9)
    line.run(3.0)
    assert ring(line) == {2: 5, 5: 2}
    assert line.stations[2].node.counts.tokens_received > 50


def test_a_data_expecting_reply_frame_is_answered_in_the_reply_slot() -> None:
    line = VirtualLine()
    asker, answerer = line.add(1, max_master=5), line.add(4, max_master=5)

    def respond(received: Received) -> Outgoing:
        ack = bytes.fromhex("010030") + received.npdu[4:5] + bytes.fromhex("0c0c0000000119553e44422a00003f")
        return Outgoing(received.source, ack)

    answerer.answer = respond
    line.run(1.0)
    line.enqueue(1, Outgoing(4, read_property(9), expecting_reply=True))
    line.run(0.5)
    assert [read_value(received.npdu) for received in asker.inbox] == [(9, 42.5)]
    request_at = next(t for t, f in line.sent if f.kind == FrameType.DATA_EXPECTING_REPLY)
    reply_at, reply = next((t, f) for t, f in line.sent if t > request_at and f.source == 4)
    assert reply.kind == FrameType.DATA_NOT_EXPECTING_REPLY and reply.destination == 1
    assert reply_at - request_at < 0.01  # no Reply Postponed, no wait for the token
    assert answerer.node.counts.replies_postponed == 0


def test_a_reply_not_ready_in_time_is_postponed_and_sent_with_the_token() -> None:
    line = VirtualLine()
    asker, answerer = line.add(1, max_master=5), line.add(4, max_master=5)
    line.run(1.0)
    line.enqueue(1, Outgoing(4, read_property(3), expecting_reply=True))
    line.run(REPLY_DELAY + 0.1)
    assert answerer.node.counts.replies_postponed == 1
    postponed = [f for _, f in line.sent if f.kind == FrameType.REPLY_POSTPONED]
    assert postponed == [Frame(FrameType.REPLY_POSTPONED, 1, 4)]
    assert [r.expecting_reply for r in answerer.inbox] == [True]
    ack = bytes.fromhex("01003003") + bytes.fromhex("0c0c0000000119553e44422a00003f")
    line.enqueue(4, Outgoing(1, ack))  # the reply, late: it waits for the token
    line.run(0.5)
    assert [read_value(received.npdu) for received in asker.inbox] == [(3, 42.5)]


def test_a_request_to_a_station_that_never_answers_times_out_and_the_token_moves_on() -> None:
    line = VirtualLine()
    asker = line.add(1, max_master=5)
    line.add(4, max_master=5)
    line.run(1.0)
    line.enqueue(1, Outgoing(3, read_property(1), expecting_reply=True))  # nobody at 3
    line.run(1.0)
    assert asker.node.counts.replies_timed_out == 1
    request_at = next(t for t, f in line.sent if f.kind == FrameType.DATA_EXPECTING_REPLY)
    token_at = next(t for t, f in line.sent if t > request_at and f.kind == FrameType.TOKEN and f.source == 1)
    assert T_REPLY_TIMEOUT <= token_at - request_at < T_REPLY_TIMEOUT + 0.01


def test_max_info_frames_bounds_what_one_token_sends() -> None:
    line = VirtualLine()
    busy = line.add(1, max_master=5, max_info_frames=2)
    line.add(4, max_master=5)
    line.run(1.0)
    start = len(line.sent)
    for number in range(5):
        busy.node.enqueue(Outgoing(4, bytes([1, 0, number])))
    line.run(1.0)
    groups, sending = [], 0
    for _, frame in line.sent[start:]:
        if frame.kind == FrameType.DATA_NOT_EXPECTING_REPLY:
            sending += 1
        elif frame.kind == FrameType.TOKEN and frame.source == 1 and sending:
            groups, sending = [*groups, sending], 0
    assert groups == [2, 2, 1]
    assert [f.data[2] for _, f in line.sent if f.kind == FrameType.DATA_NOT_EXPECTING_REPLY] == [0, 1, 2, 3, 4]


def test_the_token_lost_is_made_again_by_the_lowest_station_in_its_slot() -> None:
    line = VirtualLine()
    low, high = line.add(2, max_master=10), line.add(6, max_master=10)
    line.run(1.0)
    line.remove(2)
    line.remove(6)
    line.run(2.0)  # the line dead: nobody holds the token
    line.stations[2], line.stations[6] = low, high
    line.enqueue(6, Outgoing(2, b"\x01\x00\x99"))
    line.enqueue(2, Outgoing(6, b"\x01\x00\x98"))
    line.run(1.0)
    assert low.node.counts.tokens_lost >= 2 and low.node.state != State.NO_TOKEN
    first_pfm = next(f for t, f in line.sent if t > 3.0 and f.kind == FrameType.POLL_FOR_MASTER)
    assert first_pfm.source == 2  # the lowest address's slot comes first
    assert ring(line) == {2: 6, 6: 2}


def test_a_frame_from_another_station_with_our_address_is_counted_and_never_acted_upon() -> None:
    line = VirtualLine()
    mine = line.add(3, max_master=5)
    line.add(1, max_master=5)
    line.run(1.0)
    start = len(line.sent)
    line.send_from(Frame(FrameType.POLL_FOR_MASTER, 3, 3))  # a second "station 3", which our 3 must not answer
    line.run(1.0)
    assert mine.node.counts.mac_conflicts == 1
    assert not any(f.kind == FrameType.REPLY_TO_POLL_FOR_MASTER for _, f in line.sent[start:])
    assert ring(line) == {3: 1, 1: 3}


def test_a_two_percent_crc_error_line_costs_a_retry_now_and_then_never_the_ring() -> None:
    line = VirtualLine(corrupt=0.02, seed=3)
    for address in (1, 3, 7):
        line.add(address, max_master=10)
    line.run(20.0)
    counts = [line.stations[a].node.counts for a in (1, 3, 7)]
    assert ring(line) == {1: 3, 3: 7, 7: 1}
    assert all(c.invalid_frames > 10 and c.tokens_received > 500 for c in counts)
    # A garbled token is sent again (Nretry_token); the token is lost only when a retry is garbled too.
    assert sum(c.tokens_lost for c in counts) < sum(c.invalid_frames for c in counts) / 10
