"""SNMPv3 messages to this engine, opened and sealed by the User-based Security Model (RFC 3414,
RFC 3826 for AES, RFC 7860 for SHA-2), before pysnmp sees them.

    usm = Usm(engine_id, clock, users, counts, served_counter, max_size)
    opened = usm.open(datagram, source)   # Opened, a Report (bytes), b"" (drop) or None (pysnmp's)
    usm.seal(opened, response_pdu)        # the response, signed and encrypted as the request was

Every v3 request to this engine is checked here, in the RFC's order, and each failure is counted in
its usmStats counter and answered with the Report RFC 3414 and RFC 3412 7.1.3 call for (at
noAuthNoPriv, but notInTimeWindow signed, at authNoPriv), unless the request asked for none; each
class of failure is said in the log at most once a minute. pysnmp's own checks would report a wrong
digest or a failed decryption signed and encrypted with the user's real keys, and send nothing at
all for a security level the user is not served at. A request that passes is handed to the fast
path (gateway.snmp.fast) in plaintext; what the fast path does not answer goes to pysnmp as it
came, whose checks then pass too. Messages about another engine that ask for no report (the
responses and reports to this engine's informs) are pysnmp's.

A user is served at its one level (`SnmpUser.level`, which its privacy protocol sets), as pysnmp
serves it. Keys are localized as pysnmp localizes them; HMAC is the standard library's, AES-CFB
the `cryptography` package's (imported only when a user has privacy).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyasn1.codec.ber import encoder
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import rfc1902

from gateway.config import SnmpUser
from gateway.logging import peer_events
from gateway.snmp import ber
from gateway.snmp.engine import MAX_BOOTS, EngineClock
from gateway.snmp.index import Oid
from gateway.snmp.readers import USM_STATS, FastCounts

V3 = 3
USM = 3  # msgSecurityModel
AUTH, PRIV, REPORTABLE = 0x01, 0x02, 0x04  # msgFlags
NO_AUTH_NO_PRIV, AUTH_NO_PRIV, AUTH_PRIV = 1, 2, 3
_LEVELS = {0: NO_AUTH_NO_PRIV, AUTH: AUTH_NO_PRIV, AUTH | PRIV: AUTH_PRIV}
_LEVEL_NAMES = {"authNoPriv": AUTH_NO_PRIV, "authPriv": AUTH_PRIV}
TIME_WINDOW = 150  # seconds (RFC 3414 2.2.3)
REPORT = 0xA8
COUNTER32 = 0x41
# (pysnmp's protocol, the HMAC's hash and its truncated length in octets: RFC 3414, RFC 7860)
AUTH_PROTOCOLS: dict[str, tuple[tuple[int, ...], str, int]] = {
    "sha1": (config.USM_AUTH_HMAC96_SHA, "sha1", 12),
    "sha224": (config.USM_AUTH_HMAC128_SHA224, "sha224", 16),
    "sha256": (config.USM_AUTH_HMAC192_SHA256, "sha256", 24),
    "sha384": (config.USM_AUTH_HMAC256_SHA384, "sha384", 32),
    "sha512": (config.USM_AUTH_HMAC384_SHA512, "sha512", 48),
}
# AES-192 and AES-256 keys extended as draft-blumenthal-aes-usm-04 says, which net-snmp does.
PRIV_PROTOCOLS: dict[str, tuple[int, ...]] = {
    "aes128": config.USM_PRIV_CFB128_AES,
    "aes192": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
    "aes256": config.USM_PRIV_CFB256_AES_BLUMENTHAL,
}

UNSUPPORTED_SEC_LEVELS, NOT_IN_TIME_WINDOWS, UNKNOWN_USER_NAMES = 1, 2, 3
UNKNOWN_ENGINE_IDS, WRONG_DIGESTS, DECRYPTION_ERRORS = 4, 5, 6


def localized_keys(user: SnmpUser, engine_id: bytes) -> tuple[bytes, bytes | None]:
    """The user's authentication and privacy keys localized for ``engine_id`` (RFC 3414 A.2), as
    given or from its passphrases."""
    auth_protocol = AUTH_PROTOCOLS[user.auth][0]
    auth = config.AUTH_SERVICES[auth_protocol]
    engine = rfc1902.OctetString(engine_id)
    auth_key = user.auth_key
    if auth_key is None:
        assert user.auth_passphrase is not None  # the config's rules
        auth_key = bytes(auth.localize_key(auth.hash_passphrase(rfc1902.OctetString(user.auth_passphrase)), engine))
    if user.priv is None:
        return auth_key, None
    priv_key = user.priv_key
    if priv_key is None:
        assert user.priv_passphrase is not None
        priv = config.PRIV_SERVICES[PRIV_PROTOCOLS[user.priv]]
        master = priv.hash_passphrase(auth_protocol, rfc1902.OctetString(user.priv_passphrase))
        priv_key = bytes(priv.localize_key(auth_protocol, master, engine))
    return auth_key, priv_key


def register(engine: SnmpEngine, user: SnmpUser) -> None:
    """Make the user known to pysnmp (which serves SET, and sends notifications): with its
    passphrases, so that it can localize them for an inform receiver's engine, or its keys."""
    auth_protocol = AUTH_PROTOCOLS[user.auth][0]
    passphrase, localized = config.USM_KEY_TYPE_PASSPHRASE, config.USM_KEY_TYPE_LOCALIZED
    arguments: dict[str, Any] = {
        "authProtocol": auth_protocol,
        "authKey": user.auth_passphrase or user.auth_key,
        "authKeyType": passphrase if user.auth_passphrase else localized,
    }
    if user.priv is not None:
        arguments.update(
            privProtocol=PRIV_PROTOCOLS[user.priv],
            privKey=user.priv_passphrase or user.priv_key,
            privKeyType=passphrase if user.priv_passphrase else localized,
        )
    config.add_v3_user(engine, user.name, **arguments)


Cipher = Callable[[bytes, bytes, bytes], bytes]  # (key, iv, data) -> data


def aes_cfb(encrypt: bool) -> Cipher:
    """AES in CFB mode with a 128-bit segment (RFC 3826 3.1.4)."""
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
    from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
    from cryptography.hazmat.primitives.ciphers import algorithms

    keys: dict[bytes, algorithms.AES] = {}  # one per user: made once, not per message

    def run(key: bytes, iv: bytes, data: bytes) -> bytes:
        aes = keys.get(key)
        if aes is None:
            aes = keys[key] = algorithms.AES(key)
        cipher = AesCipher(aes, CFB(iv))
        context = cipher.encryptor() if encrypt else cipher.decryptor()
        return context.update(data) + context.finalize()

    return run


@dataclass(frozen=True, slots=True)
class UsmUser:
    """A user as the front serves it: its keys localized for this engine."""

    name: bytes
    level: int
    digest: str  # the HMAC's hash
    mac_length: int
    auth_key: bytes
    priv_key: bytes | None

    @classmethod
    def of(cls, user: SnmpUser, engine_id: bytes) -> UsmUser:
        _, digest, mac_length = AUTH_PROTOCOLS[user.auth]
        auth_key, priv_key = localized_keys(user, engine_id)
        return cls(user.name.encode(), _LEVEL_NAMES[user.level or ""], digest, mac_length, auth_key, priv_key)


@dataclass(frozen=True, slots=True)
class Message:
    """An SNMPv3 message with USM security parameters (RFC 3412 6, RFC 3414 2.4)."""

    msg_id: int
    max_size: int
    flags: int
    security_model: int
    engine_id: bytes
    boots: int
    time: int
    user: bytes
    auth: bytes  # msgAuthenticationParameters
    auth_at: int  # where they start in the whole message (zeroed to compute the digest)
    priv: bytes  # msgPrivacyParameters
    data: bytes  # the plaintext ScopedPDU (a whole SEQUENCE), or the encrypted one's octets
    encrypted: bool


def read_message(data: bytes) -> Message:
    """An SNMPv3 message read strictly (`ber.Unusual` for anything else)."""
    try:
        start, end = ber.header(data, 0, ber.SEQUENCE)
        version, at = ber.unsigned(data, start)
        if version != V3 or end != len(data):
            raise ber.Unusual
        at, header_end = ber.header(data, at, ber.SEQUENCE)
        msg_id, at = ber.unsigned(data, at)
        max_size, at = ber.unsigned(data, at)
        flags, at = _octets(data, at)
        security_model, at = ber.unsigned(data, at)
        if at != header_end or len(flags) != 1:
            raise ber.Unusual
        params_start, params_end = ber.header(data, at, ber.OCTET_STRING)
        at, sequence_end = ber.header(data, params_start, ber.SEQUENCE)
        engine_id, at = _octets(data, at)
        boots, at = ber.unsigned(data, at)
        time, at = ber.unsigned(data, at)
        user, at = _octets(data, at)
        auth_at, _ = ber.header(data, at, ber.OCTET_STRING)
        auth, at = _octets(data, at)
        priv, at = _octets(data, at)
        if at != sequence_end or at != params_end or at >= end:
            raise ber.Unusual
        encrypted = data[at] == ber.OCTET_STRING
        data_start, data_end = ber.header(data, at, ber.OCTET_STRING if encrypted else ber.SEQUENCE)
        if data_end != end:
            raise ber.Unusual
    except IndexError:
        raise ber.Unusual from None
    return Message(
        msg_id,
        max_size,
        flags[0],
        security_model,
        engine_id,
        boots,
        time,
        user,
        auth,
        auth_at,
        priv,
        data[data_start:end] if encrypted else data[at:end],
        encrypted,
    )


def _octets(data: bytes, at: int) -> tuple[bytes, int]:
    """(content, end) of the OCTET STRING at ``at``."""
    start, end = ber.header(data, at, ber.OCTET_STRING)
    return data[start:end], end


@dataclass(frozen=True, slots=True)
class Opened:
    """A request that passed every check: who sent it, and its ScopedPDU in plaintext."""

    message: Message
    user: UsmUser
    scoped: bytes


_VERSION = ber.tlv(ber.INTEGER, bytes((V3,)))
_SECURITY_MODEL = ber.tlv(ber.INTEGER, bytes((USM,)))
_NO_ERROR = ber.tlv(ber.INTEGER, b"\x00") * 2  # error-status, error-index
_FLAGS = {NO_AUTH_NO_PRIV: 0, AUTH_NO_PRIV: AUTH, AUTH_PRIV: AUTH | PRIV}
# What the log says of each class of refusal, once a minute at most (counted for the status line)
REFUSALS = {
    UNKNOWN_ENGINE_IDS: peer_events("snmpv3 requests for another engine id"),
    UNKNOWN_USER_NAMES: peer_events("snmpv3 requests from unknown users"),
    UNSUPPORTED_SEC_LEVELS: peer_events("snmpv3 requests at a security level the user is not served at"),
    WRONG_DIGESTS: peer_events("snmpv3 requests with a wrong digest (authentication key)"),
    NOT_IN_TIME_WINDOWS: peer_events("snmpv3 requests outside the time window (replayed, or cached before a restart)"),
    DECRYPTION_ERRORS: peer_events("snmpv3 requests that did not decrypt (privacy key)"),
}
INVALID_FLAGS = peer_events("snmpv3 messages with privacy but no authentication")


class Usm:
    def __init__(
        self,
        engine_id: bytes,
        clock: EngineClock,
        users: Iterable[UsmUser],
        counts: FastCounts,
        served: Callable[[int], int],
        max_size: int,
    ) -> None:
        self.engine_id = engine_id
        self.clock = clock
        self.users = {user.name: user for user in users}
        self.counts = counts
        self._served = served  # a usmStats counter as served (ours and pysnmp's), by its number
        self.max_size = max_size  # snmpEngineMaxMessageSize
        private = any(user.priv_key is not None for user in self.users.values())
        self._encrypt: Cipher = aes_cfb(True) if private else _no_cipher
        self._decrypt: Cipher = aes_cfb(False) if private else _no_cipher
        self._salt = int.from_bytes(os.urandom(8), "big")  # RFC 3826 3.1.2.1: a counter from a random start
        # What every message from this engine holds: its ID, its context (the default alone), and
        # the header's msgMaxSize, msgFlags (never reportable) and msgSecurityModel at each level
        self._engine = ber.tlv(ber.OCTET_STRING, engine_id)
        self._context = self._engine + ber.tlv(ber.OCTET_STRING, b"")
        self._header = {
            level: ber.tlv(ber.INTEGER, _unsigned(max_size))
            + ber.tlv(ber.OCTET_STRING, bytes((flags,)))
            + _SECURITY_MODEL
            for level, flags in _FLAGS.items()
        }

    def open(self, data: bytes, source: str) -> Opened | bytes | None:
        """The request to answer; or the Report to send instead (b"": drop it); or None: pysnmp's."""
        try:
            message = read_message(data)
        except ber.Unusual:
            return None
        if message.security_model != USM:
            return None  # pysnmp counts it in snmpUnknownSecurityModels
        level = _LEVELS.get(message.flags & (AUTH | PRIV))
        if level is None:  # RFC 3412 7.2.5
            self.counts.invalid_msgs += 1
            INVALID_FLAGS.count(source, f"msgFlags {message.flags:#04x}")
            return b""
        if message.engine_id != self.engine_id:
            if not message.flags & REPORTABLE:
                return None  # a response or report to this engine's informs
            if not message.engine_id:  # discovery (RFC 3414 4): routine, counted but not logged
                self.counts.usm[UNKNOWN_ENGINE_IDS] += 1
                return self._report(
                    message, _counter(UNKNOWN_ENGINE_IDS), self._served(UNKNOWN_ENGINE_IDS), NO_AUTH_NO_PRIV
                )
            return self._refuse(message, UNKNOWN_ENGINE_IDS, source, message.engine_id.hex())
        user = self.users.get(message.user)
        if user is None:
            return self._refuse(message, UNKNOWN_USER_NAMES, source, repr(message.user)[1:])
        name = user.name.decode()
        # The one exception (RFC 3414 4, as pysnmp takes it): a user with privacy may learn the
        # engine's boots and time with an authNoPriv request carrying zeros for them.
        probe = level == AUTH_NO_PRIV and user.level == AUTH_PRIV and message.boots == message.time == 0
        if level != user.level and not probe:
            return self._refuse(message, UNSUPPORTED_SEC_LEVELS, source, f"{name} at level {level}")
        if level > NO_AUTH_NO_PRIV and not (
            len(message.auth) == user.mac_length
            and hmac.compare_digest(self._mac(user, data, message.auth_at), message.auth)
        ):
            return self._refuse(message, WRONG_DIGESTS, source, name)
        clock = self.clock
        if clock.boots == MAX_BOOTS or message.boots != clock.boots or abs(message.time - clock.time()) > TIME_WINDOW:
            # RFC 3414 3.2.7a: reported signed, so the manager can trust the engine's boots and time
            detail = f"{name}: boots {message.boots}, time {message.time}"
            return self._refuse(message, NOT_IN_TIME_WINDOWS, source, detail, AUTH_NO_PRIV, user)
        scoped = self._plaintext(message, user)
        if scoped is None:
            return self._refuse(message, DECRYPTION_ERRORS, source, name)
        return Opened(message, user, scoped)

    def seal(self, opened: Opened, pdu: bytes) -> bytes:
        """The response carrying ``pdu``, at the request's security level."""
        return self._message(opened.message, opened.user.level, opened.user, pdu)

    def _plaintext(self, message: Message, user: UsmUser) -> bytes | None:
        """The ScopedPDU; None when it does not decrypt to one (RFC 3414 3.2.8)."""
        if message.encrypted != (user.level == AUTH_PRIV):
            return None
        if not message.encrypted:
            return message.data
        if len(message.priv) != 8 or user.priv_key is None:
            return None
        scoped = self._decrypt(user.priv_key, _iv(message.boots, message.time, message.priv), message.data)
        try:
            _, end = ber.header(scoped, 0, ber.SEQUENCE)
        except (ber.Unusual, IndexError):
            return None
        return scoped[:end]  # CFB needs no padding, but a sender may have added some

    def _mac(self, user: UsmUser, data: bytes, at: int) -> bytes:
        """The digest of a message with its msgAuthenticationParameters (at ``at``) zeroed."""
        length = user.mac_length
        return hmac.digest(user.auth_key, data[:at] + bytes(length) + data[at + length :], user.digest)[:length]

    def _refuse(
        self,
        message: Message,
        number: int,
        source: str,
        detail: str,
        level: int = NO_AUTH_NO_PRIV,
        signer: UsmUser | None = None,
    ) -> bytes:
        self.counts.usm[number] += 1
        REFUSALS[number].count(source, detail)
        return self._report(message, _counter(number), self._served(number), level, signer)

    def report(self, opened: Opened, counter: Oid, value: int) -> bytes:
        """A Report of ``counter`` (its new ``value``) to an opened request, at the request's level
        (RFC 3413 3.2: an unknown context)."""
        return self._report(opened.message, counter, value, opened.user.level, opened.user)

    def _report(self, message: Message, counter: Oid, value: int, level: int, signer: UsmUser | None = None) -> bytes:
        """The Report of a refused request (RFC 3412 7.1.3): the counter, at ``level``; b"" when the
        request asked for none."""
        if not message.flags & REPORTABLE:
            return b""
        name = encoder.encode(rfc1902.ObjectName(counter))
        varbinds = ber.tlv(ber.SEQUENCE, ber.tlv(ber.SEQUENCE, name + ber.tlv(COUNTER32, _unsigned(value % 2**32))))
        pdu = ber.tlv(REPORT, ber.tlv(ber.INTEGER, _request_id(message)) + _NO_ERROR + varbinds)
        return self._message(message, level, signer, pdu)

    def _message(self, request: Message, level: int, user: UsmUser | None, pdu: bytes) -> bytes:
        """A message from this engine answering ``request``: its ScopedPDU carries ``pdu``."""
        scoped = ber.tlv(ber.SEQUENCE, self._context + pdu)
        boots, time = self.clock.boots, self.clock.time()
        salt, data = b"", scoped
        if level == AUTH_PRIV:
            assert user is not None and user.priv_key is not None
            self._salt = (self._salt + 1) % 2**64
            salt = self._salt.to_bytes(8, "big")
            data = ber.tlv(ber.OCTET_STRING, self._encrypt(user.priv_key, _iv(boots, time, salt), scoped))
        mac_length = 0 if user is None or level == NO_AUTH_NO_PRIV else user.mac_length
        privacy = ber.tlv(ber.OCTET_STRING, salt)
        parameters = ber.tlv(
            ber.SEQUENCE,
            self._engine
            + ber.tlv(ber.INTEGER, _unsigned(boots))
            + ber.tlv(ber.INTEGER, _unsigned(time))
            + ber.tlv(ber.OCTET_STRING, request.user)
            + bytes((ber.OCTET_STRING, mac_length))
            + bytes(mac_length)
            + privacy,
        )
        header = ber.tlv(ber.SEQUENCE, ber.tlv(ber.INTEGER, _unsigned(request.msg_id)) + self._header[level])
        whole = ber.tlv(ber.SEQUENCE, _VERSION + header + ber.tlv(ber.OCTET_STRING, parameters) + data)
        if not mac_length:
            return whole
        assert user is not None
        at = len(whole) - len(data) - len(privacy) - mac_length  # the digest's place, zeroed
        digest = hmac.digest(user.auth_key, whole, user.digest)[:mac_length]
        return whole[:at] + digest + whole[at + mac_length :]


def _counter(number: int) -> Oid:
    """The instance of a usmStats counter."""
    return USM_STATS + (number, 0)


def _request_id(message: Message) -> bytes:
    """The BER content of the request-id of a plaintext request; 0 when it cannot be read (RFC 3412
    7.1.3a: encrypted, or not a PDU)."""
    if message.encrypted:
        return b"\x00"
    try:
        at, _ = ber.header(message.data, 0, ber.SEQUENCE)
        _, at = ber.header(message.data, at, ber.OCTET_STRING)  # contextEngineID
        _, at = ber.header(message.data, at, ber.OCTET_STRING)  # contextName
        start, _ = ber.header(message.data, at, message.data[at])
        return ber.request_id(message.data, start)[0]
    except (ber.Unusual, IndexError):
        return b"\x00"


def _unsigned(value: int) -> bytes:
    """The content of a minimal BER INTEGER of a value >= 0."""
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def _iv(boots: int, time: int, salt: bytes) -> bytes:
    """RFC 3826 3.1.2.1: the authoritative engine's boots and time, then the salt."""
    return boots.to_bytes(4, "big") + time.to_bytes(4, "big") + salt


def _no_cipher(key: bytes, iv: bytes, data: bytes) -> bytes:
    raise AssertionError("no user has privacy")
