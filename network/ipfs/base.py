"""The IPFS interface Hailstone uses, its errors and its limits.

Two implementations exist: :mod:`network.ipfs.embedded` (a kubo node inside this
process, the default) and :mod:`network.ipfs.rpc` (an existing kubo daemon reached
over its HTTP RPC API). Every method blocks, is meant to run on a worker thread,
and returns within a bounded time; only :class:`IpfsError` subclasses escape.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from network.ipfs.cid import CidError, digest_from_cid

# Largest object add()/get() handle. One raw block; kubo refuses to exchange
# blocks over 1 MiB (bitswap and `block put` limit), so this is the hard ceiling.
MAX_OBJECT_BYTES = 1024 * 1024
# Largest pubsub payload. gossipsub's default maximum message is 1 MiB including
# the envelope (signature, key, seqno, topic); half of that leaves ample room.
MAX_MESSAGE_BYTES = 512 * 1024
# Longest topic name accepted (kubo has no documented limit; ours keeps URLs short).
MAX_TOPIC_CHARS = 256
# Default seconds for calls that talk to peers or to a daemon (connect, publish).
DEFAULT_CALL_TIMEOUT_S = 15.0


class IpfsError(Exception):
    """Base class for every error raised by an :class:`IpfsNode`."""


class IpfsTimeout(IpfsError):
    """The operation did not finish within its timeout."""


class IpfsBusy(IpfsError):
    """Too many fetches are still running in the backend (some after their callers
    gave up): try again later. Nobody's fault, so no peer is blamed for it."""


class IpfsTooLarge(IpfsError):
    """An object or message exceeds the size limit."""


class IpfsUnavailable(IpfsError):
    """The IPFS library or daemon is missing, unreachable, or the node is closed.

    The message says what to install or do next.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class PubsubMessage:
    """One message received on a pubsub topic.

    Attributes:
        from_peer: Peer id of the node that published it (our own id for our own
            messages, so callers can skip them).
        data: The payload bytes.
        topic: The topic it arrived on.
    """

    from_peer: str
    data: bytes
    topic: str


class Subscription(abc.ABC):
    """A live subscription to one pubsub topic."""

    @property
    @abc.abstractmethod
    def topic(self) -> str:
        """The topic this subscription listens to."""

    @abc.abstractmethod
    def next_message(self, timeout: float) -> PubsubMessage | None:
        """Wait up to ``timeout`` seconds for the next message.

        Returns:
            The message, or None when none arrived in time.

        Raises:
            IpfsUnavailable: The subscription or its node is closed.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the subscription; idempotent."""

    def take_dropped(self) -> dict[str, int]:
        """Messages dropped unread since the last call, by sender (the inbox was over
        its budget: network/ipfs/inbox.py)."""
        return {}

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class IpfsNode(abc.ABC):
    """A running IPFS node (embedded or reached over RPC)."""

    @abc.abstractmethod
    def add(self, data: bytes) -> str:
        """Store ``data`` as one raw block and return its CID.

        The CID equals :func:`network.ipfs.cid.cid_for_bytes` of ``data``.

        Raises:
            IpfsTooLarge: ``len(data) > MAX_OBJECT_BYTES``.
        """

    @abc.abstractmethod
    def get(self, cid: str, timeout: float, max_bytes: int) -> bytes:
        """Fetch the object ``cid`` (from peers if needed).

        Args:
            cid: A raw sha2-256 CIDv1 (``bafkrei...``).
            timeout: Seconds to wait at most.
            max_bytes: Largest object accepted.

        Returns:
            The bytes, verified against ``cid``.

        Raises:
            IpfsTimeout: Not found within ``timeout``.
            IpfsTooLarge: The object is larger than ``max_bytes``.
            IpfsError: Bad CID, or the bytes do not hash to ``cid``.
        """

    @abc.abstractmethod
    def remove(self, cid: str) -> bool:
        """Stop holding the object ``cid`` in this node's store (peers keep theirs).

        Returns True when a copy was removed, False when none was held.

        Raises:
            IpfsError: Bad CID, or the store refused.
        """

    @abc.abstractmethod
    def publish(self, topic: str, data: bytes) -> None:
        """Publish ``data`` on the pubsub ``topic``."""

    @abc.abstractmethod
    def subscribe(self, topic: str) -> Subscription:
        """Subscribe to ``topic``; the caller closes the subscription."""

    @abc.abstractmethod
    def peers(self) -> list[str]:
        """Return the peer ids currently connected."""

    @abc.abstractmethod
    def peer_id(self) -> str:
        """Return this node's peer id."""

    @abc.abstractmethod
    def addresses(self) -> list[str]:
        """Return this node's multiaddrs, each ending in ``/p2p/<peer id>``."""

    @abc.abstractmethod
    def connect(self, multiaddr: str) -> None:
        """Connect to the peer at ``multiaddr`` (which must include ``/p2p/<id>``)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the node cleanly; idempotent."""

    def pending_fetches(self) -> int:
        """Fetches still running in the backend, some after their callers gave up
        (0 where the backend keeps none): work that can wait checks it first."""
        return 0

    def __enter__(self) -> IpfsNode:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def check_topic(topic: str) -> None:
    """Raise IpfsError unless ``topic`` is a usable pubsub topic name."""
    if not isinstance(topic, str) or not topic:
        raise IpfsError("a pubsub topic must be a non-empty string")
    if len(topic) > MAX_TOPIC_CHARS:
        raise IpfsError(f"pubsub topic longer than {MAX_TOPIC_CHARS} characters")
    if "\x00" in topic:
        raise IpfsError("pubsub topic must not contain NUL characters")


def check_payload(data: bytes, limit: int, what: str) -> bytes:
    """Return ``data`` as bytes, raising IpfsTooLarge above ``limit`` bytes."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IpfsError(f"{what} must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) > limit:
        raise IpfsTooLarge(f"{what} is {len(data)} bytes; the limit is {limit} bytes")
    return data


def check_cid(cid: str) -> bytes:
    """Return the sha2-256 digest ``cid`` names, or raise IpfsError for a CID that is
    not one Hailstone uses (network/ipfs/cid.py)."""
    try:
        return digest_from_cid(cid)
    except CidError as exc:
        raise IpfsError(str(exc)) from exc


def check_multiaddr(multiaddr: str) -> str:
    """Return the peer id in a ``.../p2p/<id>`` multiaddr, or raise IpfsError."""
    if not isinstance(multiaddr, str) or not multiaddr.startswith("/"):
        raise IpfsError(f"not a multiaddr: {multiaddr!r:.120}")
    parts = multiaddr.rstrip("/").split("/")
    if len(parts) < 3 or parts[-2] not in ("p2p", "ipfs") or not parts[-1]:
        raise IpfsError(f"multiaddr must end in /p2p/<peer id>: {multiaddr!r:.120}")
    return parts[-1]
