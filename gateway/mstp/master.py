"""The MS/TP master node state machine (ASHRAE 135 clause 9.5.6), without I/O.

The node is told what the line does (`heard`: octets arrived; `received`: a frame or an invalid
one; `tick`: time passed or something was queued) and acts through two callbacks: `send` puts a
frame on the line and says when its last bit leaves, `deliver` hands a received NPDU up. The
driver (`gateway.mstp.link`) calls `tick` again at `deadline`. So the whole protocol is tested with
a clock of the test's own, and runs on a real port unchanged.

What it does, in the standard's words: it passes the token to the next master (Next_Station), uses
it to send up to Max_Info_Frames queued frames, waits Treply_timeout for the reply to a Data
Expecting Reply frame it sent, answers one sent to it within the reply delay or with Reply
Postponed (the reply then waits for the token), polls for new masters (Poll-For-Master) every
Npoll tokens and whenever it does not know its successor, finds a new successor when the next
station stops taking the token, and when the token is lost (Tno_token of silence) creates one in
its time slot, carrying on alone (sole master) while no other master answers.

    node = MasterNode(station=3, max_master=127, max_info_frames=10, send=put_on_line, deliver=hand_up)
    node.enqueue(Outgoing(destination=7, npdu=request, expecting_reply=True))
    node.heard(len(octets), now); node.received(frame, now); node.tick(now)
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.mstp.frames import BROADCAST, Frame, FrameType
from gateway.mstp.receiver import Invalid
from gateway.mstp.replies import answers

# Clause 9.5.3. Where the standard gives a range, the value most tolerant of peers that are slow
# to react (the longest), except ours to answer, which leaves room under Treply_delay (250 ms).
T_NO_TOKEN = 0.500  # silence that means the token is lost
T_SLOT = 0.010  # each station's slot, after T_NO_TOKEN, to create a token
T_USAGE_TIMEOUT = 0.035  # a successor's time to start using the token or answer a Poll For Master (20-35 ms)
T_REPLY_TIMEOUT = 0.300  # a station's time to start answering a Data Expecting Reply frame (255-300 ms)
REPLY_DELAY = 0.200  # our time to find the reply to a Data Expecting Reply frame before Reply Postponed
N_POLL = 50  # tokens between two Poll For Master of the maintenance cycle
N_RETRY_TOKEN = 1
N_MIN_OCTETS = 4  # octets heard that show another station is using the line
QUEUE_LIMIT = 256  # frames waiting for the token; more are dropped and counted
LATE = 0.001  # past a limit the standard states as "greater than", not "at least"


class State(enum.Enum):
    IDLE = "idle"
    USE_TOKEN = "use token"
    WAIT_FOR_REPLY = "wait for reply"
    DONE_WITH_TOKEN = "done with token"
    PASS_TOKEN = "pass token"
    NO_TOKEN = "no token"
    POLL_FOR_MASTER = "poll for master"
    ANSWER_DATA_REQUEST = "answer data request"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An NPDU to send when the node holds the token (or as a reply); destination 255 broadcasts."""

    destination: int
    npdu: bytes
    expecting_reply: bool = False


@dataclass(frozen=True, slots=True)
class Received:
    """An NPDU from the line; `destination` is this station or 255 (a broadcast)."""

    source: int
    destination: int
    npdu: bytes
    expecting_reply: bool


@dataclass(slots=True)
class MasterCounts:
    frames_sent: int = 0
    frames_received: int = 0  # valid frames heard, whoever they were for
    invalid_frames: int = 0  # bad CRCs, frames cut short or too long
    npdus_sent: int = 0
    npdus_received: int = 0
    tokens_received: int = 0
    replies_postponed: int = 0  # Reply Postponed sent: no reply ready within REPLY_DELAY
    replies_timed_out: int = 0  # no reply to our Data Expecting Reply within T_REPLY_TIMEOUT
    tokens_lost: int = 0  # T_NO_TOKEN of silence
    mac_conflicts: int = 0  # frames from another station with this station's MAC
    queue_dropped: int = 0


@dataclass(frozen=True, slots=True)
class _Request:
    """A Data Expecting Reply frame this node is answering."""

    source: int
    npdu: bytes
    ended: float


class MasterNode:
    def __init__(
        self,
        station: int,
        max_master: int,
        max_info_frames: int,
        send: Callable[[Frame], float],
        deliver: Callable[[Received], None],
        conflict: Callable[[Frame], None] = lambda _: None,
        now: float = 0.0,
    ) -> None:
        if not 0 <= station <= max_master <= 127:
            raise ValueError(f"station {station} and max_master {max_master}: 0 <= station <= max_master <= 127")
        self.station = station
        self.max_master = max_master
        self.max_info_frames = max_info_frames
        self._send = send
        self._deliver = deliver
        self._conflict = conflict
        self.counts = MasterCounts()
        self.queue: deque[Outgoing] = deque()
        self.rotation: float | None = None  # seconds between the last two tokens to this station
        self.restart(now)

    def restart(self, now: float) -> None:
        """Initialize (as at power-up, or on a port opened again): the successor unknown, a Poll For
        Master at the first token. The queue and the counters stay."""
        self.state = State.IDLE
        self.next_station = self.station
        self.poll_station = self.station
        self.token_count = N_POLL
        self.frame_count = 0
        self.retry_count = 0
        self.event_count = 0
        self.sole_master = False
        self.quiet_since = now  # SilenceTimer's zero: the last octet heard or sent
        self.token_at: float | None = None  # when the token last came to this station
        self._request: _Request | None = None
        self._now = now
        self._silence_now = 0.0  # SilenceTimer as the current step sees it
        self._frame: Frame | None = None  # a valid frame not yet acted upon
        self._invalid = False  # an invalid frame not yet acted upon

    # What the line does

    def heard(self, octets: int, now: float) -> None:
        """Octets arrived (any, noise too): the line is not silent, someone may be using the token."""
        self.event_count += octets
        self.quiet_since = now
        self._run(now)

    def received(self, found: Frame | Invalid, now: float) -> None:
        if isinstance(found, Invalid):
            self.counts.invalid_frames += 1
            self._invalid = True
        else:
            self.counts.frames_received += 1
            if found.source == self.station:
                self.counts.mac_conflicts += 1
                self._conflict(found)
                return  # another station with our address: never acted upon
            self._frame = found
        self._run(now)
        self._frame, self._invalid = None, False  # what no state took is past

    def tick(self, now: float) -> None:
        """Time passed, or a frame was queued: act on what is due."""
        self._run(now)

    def set_max_master(self, max_master: int) -> None:
        """Take a new Max_Master at once; a successor or a poll past it is forgotten, so the next
        station is looked for again (Poll For Master) within the new range."""
        if not self.station <= max_master <= 127:
            raise ValueError(f"max_master {max_master}: {self.station}-127 (at least the station's address)")
        self.max_master = max_master
        if self.next_station > max_master:
            self.next_station = self.station
        if self.poll_station > max_master:
            self.poll_station = self.station

    def enqueue(self, outgoing: Outgoing) -> bool:
        """Queue an NPDU for the token (or for the reply slot); False when the queue is full."""
        if len(self.queue) >= QUEUE_LIMIT:
            self.counts.queue_dropped += 1
            return False
        self.queue.append(outgoing)
        return True

    @property
    def deadline(self) -> float | None:
        """When `tick` must run next, whatever the line does."""
        match self.state:
            case State.IDLE:
                return self.quiet_since + T_NO_TOKEN
            case State.WAIT_FOR_REPLY:
                return self.quiet_since + T_REPLY_TIMEOUT
            case State.PASS_TOKEN | State.POLL_FOR_MASTER:
                return self.quiet_since + T_USAGE_TIMEOUT
            case State.NO_TOKEN:
                slot = self._slot(self.station)
                if self.quiet_since + slot > self._now:
                    return self.quiet_since + slot
                return self.quiet_since + self._slot(self.max_master + 1) + LATE
            case State.ANSWER_DATA_REQUEST:
                assert self._request is not None
                return self._request.ended + REPLY_DELAY
        return None

    # The state machine

    def _run(self, now: float) -> None:
        self._now = now
        self._silence_now = now - self.quiet_since
        while self._step(now):
            self._silence_now = now - self.quiet_since

    def _step(self, now: float) -> bool:
        """Act in the current state; True when the next state must act at once."""
        match self.state:
            case State.IDLE:
                return self._idle(now)
            case State.USE_TOKEN:
                return self._use_token()
            case State.WAIT_FOR_REPLY:
                return self._wait_for_reply()
            case State.DONE_WITH_TOKEN:
                return self._done_with_token()
            case State.PASS_TOKEN:
                return self._pass_token()
            case State.NO_TOKEN:
                return self._no_token()
            case State.POLL_FOR_MASTER:
                return self._poll_for_master()
            case State.ANSWER_DATA_REQUEST:
                return self._answer_data_request(now)
        return False

    def _idle(self, now: float) -> bool:
        if self._invalid:
            self._invalid = False
            return False
        frame, self._frame = self._frame, None
        if frame is not None:
            return self._idle_frame(frame, now)
        if self._silence_now >= T_NO_TOKEN:  # LostToken
            self.counts.tokens_lost += 1
            self.event_count = 0
            self.state = State.NO_TOKEN
            return True
        return False

    def _idle_frame(self, frame: Frame, now: float) -> bool:
        to_us = frame.destination == self.station
        if not to_us and frame.destination != BROADCAST:
            return False
        match frame.kind:
            case FrameType.TOKEN if to_us:
                self.counts.tokens_received += 1
                if self.token_at is not None:
                    self.rotation = now - self.token_at
                self.token_at = now
                self.frame_count = 0
                self.sole_master = False
                self.state = State.USE_TOKEN
                return True
            case FrameType.POLL_FOR_MASTER if to_us:
                self._transmit(FrameType.REPLY_TO_POLL_FOR_MASTER, frame.source)
            case FrameType.DATA_NOT_EXPECTING_REPLY:
                self._hand_up(frame, expecting_reply=False)
            case FrameType.DATA_EXPECTING_REPLY if to_us:
                self._hand_up(frame, expecting_reply=True)
                self._request = _Request(frame.source, frame.data, now)
                self.state = State.ANSWER_DATA_REQUEST
                return True
            case FrameType.TEST_REQUEST if to_us:
                self._transmit(FrameType.TEST_RESPONSE, frame.source, frame.data)
        return False

    def _use_token(self) -> bool:
        if not self.queue:  # NothingToSend
            self.frame_count = self.max_info_frames
            self.state = State.DONE_WITH_TOKEN
            return True
        outgoing = self.queue.popleft()
        waits = outgoing.expecting_reply and outgoing.destination != BROADCAST
        self._send_npdu(outgoing)
        self.frame_count += 1
        self.state = State.WAIT_FOR_REPLY if waits else State.DONE_WITH_TOKEN
        return not waits

    def _wait_for_reply(self) -> bool:
        frame, self._frame = self._frame, None
        if self._silence_now >= T_REPLY_TIMEOUT and frame is None:  # ReplyTimeout: the request failed
            self.counts.replies_timed_out += 1
            self.frame_count = self.max_info_frames
            self.state = State.DONE_WITH_TOKEN
            return True
        if self._invalid:  # InvalidFrame
            self._invalid = False
            self.state = State.DONE_WITH_TOKEN
            return True
        if frame is None:
            return False
        if frame.destination == self.station and frame.kind in (
            FrameType.DATA_NOT_EXPECTING_REPLY,
            FrameType.TEST_RESPONSE,
            FrameType.REPLY_POSTPONED,
        ):  # ReceivedReply, ReceivedPostpone
            if frame.kind == FrameType.DATA_NOT_EXPECTING_REPLY:
                self._hand_up(frame, expecting_reply=False)
            self.state = State.DONE_WITH_TOKEN
        else:  # ReceivedUnexpectedFrame: another token may be about; drop ours
            self.state = State.IDLE
        return True

    def _done_with_token(self) -> bool:
        following = (self.station + 1) % (self.max_master + 1)
        if self.frame_count < self.max_info_frames:  # SendAnotherFrame
            self.state = State.USE_TOKEN
            return True
        if not self.sole_master and self.next_station == self.station:  # NextStationUnknown
            self._poll(following)
            return False
        if self.token_count < N_POLL - 1:
            if self.sole_master and self.next_station != following:  # SoleMaster
                self.frame_count = 0
                self.token_count += 1
                self.state = State.USE_TOKEN
                return True
            self.token_count += 1  # SendToken
            self._pass(self.next_station)
            return False
        if (self.poll_station + 1) % (self.max_master + 1) == self.next_station:
            if self.sole_master:  # SoleMasterRestartMaintenancePFM
                self._poll((self.next_station + 1) % (self.max_master + 1))
                self.next_station = self.station
                self.token_count = 1
                return False
            self.poll_station = self.station  # ResetMaintenancePFM
            self._pass(self.next_station)
            self.token_count = 1
            return False
        self._poll((self.poll_station + 1) % (self.max_master + 1))  # SendMaintenancePFM
        return False

    def _pass_token(self) -> bool:
        if self._silence_now < T_USAGE_TIMEOUT:
            if self.event_count > N_MIN_OCTETS:  # SawTokenUser
                self.state = State.IDLE
                return True
            return False
        if self.retry_count < N_RETRY_TOKEN:  # RetrySendToken
            self.retry_count += 1
            self._transmit(FrameType.TOKEN, self.next_station)
            self.event_count = 0
            return False
        # FindNewSuccessor: the next station has failed.
        self._poll((self.next_station + 1) % (self.max_master + 1))
        self.next_station = self.station
        self.token_count = 0
        return False

    def _no_token(self) -> bool:
        own_slot, last_slot = self._slot(self.station), self._slot(self.max_master + 1)
        if own_slot <= self._silence_now < self._slot(self.station + 1) or self._silence_now > last_slot:
            # GenerateToken: no station below made one; this one finds a successor. (Past every
            # slot too: a node that ran late and missed its own must not leave the line dead.)
            self._poll((self.station + 1) % (self.max_master + 1))
            self.next_station = self.station
            self.token_count = 0
            return False
        if self.event_count > N_MIN_OCTETS:  # SawFrame: a station at a lower address made the token
            self.state = State.IDLE
            return True
        return False

    def _poll_for_master(self) -> bool:
        frame, self._frame = self._frame, None
        if frame is not None:
            if frame.destination == self.station and frame.kind == FrameType.REPLY_TO_POLL_FOR_MASTER:
                self.sole_master = False  # ReceivedReplyToPFM
                self.next_station = frame.source
                self.poll_station = self.station
                self.token_count = 0
                self._pass(self.next_station)
                return False
            self.state = State.IDLE  # ReceivedUnexpectedFrame
            return True
        if self._silence_now < T_USAGE_TIMEOUT and not self._invalid:
            return False
        self._invalid = False
        if self.sole_master:  # SoleMaster: nobody answered the periodic poll
            self.frame_count = 0
            self.state = State.USE_TOKEN
            return True
        if self.next_station != self.station:  # DoneWithPFM
            self._pass(self.next_station)
            return False
        following = (self.poll_station + 1) % (self.max_master + 1)
        if following != self.station:  # SendNextPFM
            self._poll(following)
            return False
        self.sole_master = True  # DeclareSoleMaster
        self.frame_count = 0
        self.state = State.USE_TOKEN
        return True

    def _answer_data_request(self, now: float) -> bool:
        request = self._request
        assert request is not None
        for outgoing in self.queue:
            if outgoing.destination == request.source and answers(request.npdu, outgoing.npdu):
                self.queue.remove(outgoing)  # Reply
                self._send_npdu(outgoing)
                break
        else:
            if now - request.ended < REPLY_DELAY:
                return False
            self.counts.replies_postponed += 1  # DeferredReply: the reply waits for our token
            self._transmit(FrameType.REPLY_POSTPONED, request.source)
        self._request = None
        self.state = State.IDLE
        return False

    # Actions

    def _slot(self, station: int) -> float:
        return T_NO_TOKEN + T_SLOT * station

    def _poll(self, station: int) -> None:
        self.poll_station = station
        self._transmit(FrameType.POLL_FOR_MASTER, station)
        self.retry_count = 0
        self.state = State.POLL_FOR_MASTER

    def _pass(self, station: int) -> None:
        self._transmit(FrameType.TOKEN, station)
        self.retry_count = 0
        self.event_count = 0
        self.state = State.PASS_TOKEN

    def _transmit(self, kind: FrameType, destination: int, data: bytes = b"") -> None:
        self.quiet_since = self._send(Frame(kind, destination, self.station, data))
        self._silence_now = 0.0
        self.counts.frames_sent += 1

    def _send_npdu(self, outgoing: Outgoing) -> None:
        kind = FrameType.DATA_EXPECTING_REPLY if outgoing.expecting_reply else FrameType.DATA_NOT_EXPECTING_REPLY
        self._transmit(kind, outgoing.destination, outgoing.npdu)
        self.counts.npdus_sent += 1

    def _hand_up(self, frame: Frame, *, expecting_reply: bool) -> None:
        self.counts.npdus_received += 1
        self._deliver(Received(frame.source, frame.destination, frame.data, expecting_reply))
