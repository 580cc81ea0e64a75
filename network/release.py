"""Signed release records: how a node learns that a newer Hailstone exists.

A maintainer signs a small release record (version, date, notes, minimum protocol
version) with a release key (`main.py release sign`); nodes gossip it on the
network's release topic and keep the newest valid one; the app shows "Hailstone
X.Y is available" and `main.py node` logs it once. The format and the rules are
docs/PROTOCOL.md §12 ("Release records"); this module is their one definition.

Trust: only records signed by a key in the `release_keys` setting count. The
setting is empty until the project publishes its key, and then nothing is
accepted (the About page says why): no key of anyone else's can raise a notice.

Validation returns `Accepted | Rejection` (network/rejection.py codes), never
raises on network input. A record that is valid but not newer than the one kept
(a replay, an older release) is ignored without a rejection.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cbor2
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from engine.files import write_atomic
from engine.params import PROTOCOL_VERSION
from network import rejection as R
from network.identity import hex_keys
from network.ipfs import IpfsError, IpfsNode, Subscription, cid_for_bytes
from network.rejection import Accepted, Rejection

log = logging.getLogger(__name__)

KIND = "release"
FORMAT_VERSION = 1  # of the release record, apart from the work protocol's version
DOMAIN = b"hailstone/release/v1\x00"
MAX_RELEASE_BYTES = 1024  # a record is ~250 bytes; the cap bounds what a peer can make us parse
MAX_VERSION_CHARS = 32
MAX_NOTES_CHARS = 512
VERSION_RE = re.compile(r"^(0|[1-9][0-9]{0,5})(\.(0|[1-9][0-9]{0,5})){1,3}$")
DATE_RE = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
NOTES_PREFIXES = ("https://", "ipfs://")
BODY_FIELDS = ("date", "min_protocol", "notes", "version")
# Where a profile keeps the newest valid release record (raw signed bytes).
RELEASE_FILE = "release.cbor"
# Announcing the kept record: soon after a peer appears (the gossip mesh needs a
# heartbeat or two), then less and less often, at most this far apart.
ANNOUNCE_FIRST_S = 2.0
ANNOUNCE_MAX_S = 600.0
PEERS_CHECK_S = 5.0


# Why a node shows no new-version notices, in words (the About page, the node's log).
NO_KEY_REASON = (
    "New-version notices are off: the project has not published its release key yet "
    "(the release_keys setting is empty)."
)


def off_reason(values: Iterable[str]) -> str:
    """Why notices are off for this `release_keys` setting ("" when they are on)."""
    try:
        keys = release_keys(values)
    except ValueError as exc:
        return f"New-version notices are off: {exc} (the release_keys setting)."
    return "" if keys else NO_KEY_REASON


def release_topic(network: str) -> str:
    """The gossip topic of a network's release records (beside wire.topics)."""
    return f"/hailstone/{network}/releases/1"


def running_version() -> str:
    """This program's version ("0.0.0" when not installed as a package)."""
    try:
        return metadata.version("hailstone")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def version_key(version: str) -> tuple[int, ...]:
    """A version as numbers to compare ("0.10" > "0.9"); missing parts count as 0.

    Raises:
        ValueError: not a version this module accepts.
    """
    if not VERSION_RE.match(version):
        raise ValueError(f"not a version (MAJOR.MINOR[.PATCH]): {version!r:.40}")
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (4 - len(parts)))


def newer(a: str, b: str) -> bool:
    """True when version `a` is newer than `b` (an unreadable `b` counts as oldest)."""
    try:
        old = version_key(b)
    except ValueError:
        old = (0, 0, 0, 0)
    return version_key(a) > old


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseRecord:
    """What a release record says. Checks its own fields.

    Attributes:
        version: MAJOR.MINOR[.PATCH] (up to four numeric parts).
        date: the release date, YYYY-MM-DD.
        notes: where the release notes are: an https:// URL or ipfs://CID.
        min_protocol: the lowest work-protocol version the release speaks; a node
            below it can no longer take part once the network moves to it.
    """

    version: str
    date: str
    notes: str
    min_protocol: int

    def __post_init__(self) -> None:
        if not isinstance(self.version, str) or len(self.version) > MAX_VERSION_CHARS:
            raise ValueError("version must be a short string")
        version_key(self.version)
        if not isinstance(self.date, str) or not DATE_RE.match(self.date):
            raise ValueError(f"date must be YYYY-MM-DD, not {self.date!r:.20}")
        if (
            not isinstance(self.notes, str)
            or len(self.notes) > MAX_NOTES_CHARS
            or not self.notes.startswith(NOTES_PREFIXES)
            or any(c.isspace() or ord(c) < 32 for c in self.notes)
        ):
            raise ValueError(
                f"notes must be an https:// or ipfs:// address of at most {MAX_NOTES_CHARS} "
                "characters, without spaces"
            )
        if type(self.min_protocol) is not int or not 1 <= self.min_protocol <= 0xFFFF:
            raise ValueError("min_protocol must be a whole number from 1 to 65535")

    def body(self) -> dict[str, object]:
        return {
            "version": self.version,
            "date": self.date,
            "notes": self.notes,
            "min_protocol": self.min_protocol,
        }


@dataclass(frozen=True, slots=True)
class SignedRelease:
    """A release record with its signer (a release key) and signature."""

    record: ReleaseRecord
    signer: bytes
    signature: bytes


def _cbor(obj: object) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def signed_bytes(record: ReleaseRecord) -> bytes:
    """What the release key signs: domain prefix, 2-byte format version, canonical body."""
    return DOMAIN + FORMAT_VERSION.to_bytes(2, "big") + _cbor(record.body())


def sign(record: ReleaseRecord, key: SigningKey) -> bytes:
    """The wire bytes of `record` signed by `key`.

    Raises:
        ValueError: the encoding would exceed MAX_RELEASE_BYTES.
    """
    signature = key.sign(signed_bytes(record)).signature
    data = _cbor([KIND, FORMAT_VERSION, record.body(), bytes(key.verify_key), signature])
    if len(data) > MAX_RELEASE_BYTES:
        raise ValueError(f"the release record is {len(data)} bytes, cap {MAX_RELEASE_BYTES}")
    return data


def parse(data: bytes, keys: Iterable[bytes]) -> SignedRelease | Rejection:
    """Check release record bytes completely; never raises.

    Args:
        data: the wire bytes.
        keys: the release keys trusted (the `release_keys` setting).
    """
    if not isinstance(data, bytes | bytearray) or len(data) > MAX_RELEASE_BYTES:
        return Rejection(R.OVERSIZED, f"release record over {MAX_RELEASE_BYTES} bytes")
    data = bytes(data)
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - cbor2 raises many types on garbage
        return Rejection(R.MALFORMED, f"release record is not CBOR ({type(exc).__name__})")
    if not isinstance(obj, list) or len(obj) != 5 or obj[0] != KIND:
        return Rejection(R.MALFORMED, "not a release record")
    _kind, version, body, signer, signature = obj
    if type(version) is not int or version != FORMAT_VERSION:
        return Rejection(R.WRONG_VERSION, f"release record format {version!r}, this node reads 1")
    if not isinstance(body, dict) or sorted(body) != sorted(BODY_FIELDS):
        return Rejection(
            R.BAD_FIELD, "release record fields are not version, date, notes, min_protocol"
        )
    if not isinstance(signer, bytes) or len(signer) != 32:
        return Rejection(R.BAD_FIELD, "release record signer is not a 32-byte key")
    if not isinstance(signature, bytes) or len(signature) != 64:
        return Rejection(R.BAD_FIELD, "release record signature is not 64 bytes")
    try:
        record = ReleaseRecord(**body)
    except (TypeError, ValueError) as exc:
        return Rejection(R.BAD_FIELD, f"release record: {exc}")
    if _cbor(obj) != data:
        return Rejection(R.NONCANONICAL, "release record is not in canonical CBOR")
    if signer not in set(keys):
        return Rejection(R.WRONG_SIGNER, "release record not signed by a release key")
    try:
        VerifyKey(signer).verify(signed_bytes(record), signature)
    except (BadSignatureError, ValueError):
        return Rejection(R.BAD_SIGNATURE, "release record signature does not verify")
    return SignedRelease(record, signer, signature)


def release_keys(values: Iterable[str]) -> frozenset[bytes]:
    """The `release_keys` setting (hex strings) as keys.

    Raises:
        ValueError: a key that is not 64 hex digits.
    """
    return hex_keys(values, "release")


@dataclass(frozen=True, slots=True)
class ReleaseNotice:
    """The newest release record this node holds, as the front ends show it."""

    version: str
    date: str
    notes: str
    min_protocol: int
    newer: bool  # newer than this program
    required: bool  # this program's protocol is below the release's minimum

    @property
    def text(self) -> str:
        line = f"Hailstone {self.version} is available ({self.date}): {self.notes}"
        if self.required:
            line += (
                f". It speaks protocol {self.min_protocol} and up; this version speaks "
                f"{PROTOCOL_VERSION}, so update before the network moves on"
            )
        return line


def notice_of(record: ReleaseRecord, current: str | None = None) -> ReleaseNotice:
    current = running_version() if current is None else current
    return ReleaseNotice(
        version=record.version,
        date=record.date,
        notes=record.notes,
        min_protocol=record.min_protocol,
        newer=newer(record.version, current),
        required=record.min_protocol > PROTOCOL_VERSION,
    )


class ReleaseWatcher:
    """Keeps the newest valid release record, gossips it, and reports a newer version.

    Runs its own thread (`start`/`stop`) over the node's IpfsNode: subscribes to the
    network's release topic, offers each message to `offer`, announces the kept
    record (soon after a peer appears, then less often), and picks up a record
    `main.py release publish` wrote into the profile. `on_notice` is called once per
    newer version (the headless node logs it; the app reads `notice()`).

    Args:
        ipfs: the node's IpfsNode (paced by the bandwidth limit like the rest).
        network: the network name (the topic).
        keys: the trusted release keys; empty: nothing is accepted, no subscription.
        data_dir: the profile, where RELEASE_FILE is kept.
        current: this program's version (tests pass one).
    """

    def __init__(
        self,
        ipfs: IpfsNode,
        network: str,
        keys: frozenset[bytes],
        data_dir: Path,
        *,
        current: str | None = None,
        on_notice: Callable[[ReleaseNotice], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ipfs = ipfs
        self.topic = release_topic(network)
        self.keys = keys
        self.path = Path(data_dir) / RELEASE_FILE
        self.current = current or running_version()
        self._on_notice = on_notice
        self._clock = clock
        self._lock = threading.Lock()
        self._kept: SignedRelease | None = None
        self._kept_bytes = b""
        self._file_stamp: tuple[int, int] | None = None
        self._noticed: set[str] = set()
        self.rejected: dict[str, int] = {}
        self.ignored = 0  # valid but not newer than the kept record (replays, older)
        self._sub: Subscription | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._announce_every = ANNOUNCE_FIRST_S
        self._next_announce = 0.0
        self._peers = 0
        self._peers_checked = -PEERS_CHECK_S

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def kept(self) -> ReleaseRecord | None:
        with self._lock:
            return self._kept.record if self._kept else None

    def notice(self) -> ReleaseNotice | None:
        """The kept release, if it is newer than this program; else None."""
        record = self.kept()
        if record is None:
            return None
        n = notice_of(record, self.current)
        return n if n.newer else None

    def offer(self, data: bytes, source: str = "gossip") -> Accepted | Rejection | None:
        """Check a release record and keep it if it is the newest.

        Returns:
            Accepted when kept, a Rejection when invalid, None when valid but not
            newer than the one kept (ignored).
        """
        signed = parse(data, self.keys)
        if isinstance(signed, Rejection):
            with self._lock:
                self.rejected[signed.reason_code] = self.rejected.get(signed.reason_code, 0) + 1
            log.info("release record from %s rejected: %s", source, signed.message)
            return signed
        with self._lock:
            if self._kept is not None and not newer(
                signed.record.version, self._kept.record.version
            ):
                self.ignored += 1
                return None
            self._kept, self._kept_bytes = signed, bytes(data)
            self._announce_every = ANNOUNCE_FIRST_S  # pass a new release on soon
            self._next_announce = self._clock()
        if source != "file":
            try:
                write_atomic(self.path, bytes(data), mode=0o644)
                self._file_stamp = self._stamp()
            except OSError as exc:  # kept in memory; the disk only saves it for later runs
                log.warning("cannot save the release record in %s: %s", self.path, exc)
        log.info("release %s kept (from %s)", signed.record.version, source)
        self._maybe_notice(signed.record)
        return Accepted(signed, cid_for_bytes(bytes(data)))

    def _maybe_notice(self, record: ReleaseRecord) -> None:
        n = notice_of(record, self.current)
        if not n.newer or record.version in self._noticed:
            return
        self._noticed.add(record.version)
        if self._on_notice is not None:
            try:
                self._on_notice(n)
            except Exception:  # noqa: BLE001 - a front end's callback must not stop the watcher
                log.exception("release notice callback failed")

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _check_file(self) -> None:
        """A record `main.py release publish` put into the profile (or the last run kept)."""
        stamp = self._stamp()
        if stamp is None or stamp == self._file_stamp:
            return
        self._file_stamp = stamp
        try:
            data = self.path.read_bytes()[: MAX_RELEASE_BYTES + 1]
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return
        self.offer(data, "file")

    def start(self, *, thread: bool = True) -> None:
        """Load the kept record, subscribe and start the thread (nothing without keys).

        Args:
            thread: False leaves the turns to the caller's `poll` (tests).
        """
        if not self.enabled:
            return
        self._check_file()
        self._sub = self.ipfs.subscribe(self.topic)
        if thread:
            self._thread = threading.Thread(
                target=self._loop, name="hailstone-release", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sub is not None:
            try:
                self._sub.close()
            except IpfsError:
                pass

    def _loop(self) -> None:
        own = self.ipfs.peer_id()
        while not self._stop.is_set():
            try:
                self.poll(own, 0.5)
            except IpfsError as exc:
                if self._stop.is_set():
                    return
                log.info("release watcher: %s", exc)
                self._stop.wait(1.0)
            except Exception:  # noqa: BLE001 - the watcher must survive anything
                log.exception("release watcher failed; going on")
                self._stop.wait(1.0)

    def poll(self, own_peer: str, timeout_s: float) -> None:
        """One turn: a message (waits up to `timeout_s`), the profile's file, an announcement."""
        assert self._sub is not None
        msg = self._sub.next_message(timeout_s)
        if msg is not None and msg.from_peer != own_peer:
            self.offer(msg.data, msg.from_peer)
        self._check_file()
        self._announce_if_due()

    def _announce_if_due(self) -> None:
        now = self._clock()
        if now - self._peers_checked >= PEERS_CHECK_S:
            self._peers_checked = now
            peers = len(self.ipfs.peers())
            if peers > self._peers:  # someone new may not have it: announce soon again
                self._announce_every = ANNOUNCE_FIRST_S
                self._next_announce = min(self._next_announce, now + ANNOUNCE_FIRST_S)
            self._peers = peers
        with self._lock:
            data = self._kept_bytes
            due = bool(data) and self._peers > 0 and now >= self._next_announce
            if due:
                self._next_announce = now + self._announce_every
                self._announce_every = min(ANNOUNCE_MAX_S, self._announce_every * 2)
        if due:
            self.ipfs.publish(self.topic, data)
