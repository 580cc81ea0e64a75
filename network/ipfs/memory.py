"""An in-memory `IpfsNode`: several nodes of one process on a `MemorySwarm`.

For unit tests of the logic above IPFS (the node's rate limits, fetch backoff and
timeouts), where real kubo would make them slow and timing-dependent. It keeps
the interface's contract: content-addressed raw blocks whose CID is
`cid_for_bytes`, size limits (`IpfsTooLarge`), bounded gets (`IpfsTimeout`),
pubsub delivered to every subscriber of the topic on connected nodes (our own
messages included, from our own peer id), and `IpfsUnavailable` once closed.
Real kubo stays in the integration tests (tests/test_ipfs_embedded.py,
tests/test_network_nodes.py).

Tests steer it through the swarm: `hold(cid)` makes gets of that object wait
until `release(cid)` (or time out), and `gets` records every get as
(node's peer id, cid) so a test can count fetches.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

from network.ipfs.base import (
    MAX_MESSAGE_BYTES,
    MAX_OBJECT_BYTES,
    IpfsError,
    IpfsNode,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsUnavailable,
    PubsubMessage,
    Subscription,
    check_multiaddr,
    check_payload,
    check_topic,
)
from network.ipfs.cid import cid_for_bytes, is_valid_cid


class MemorySwarm:
    """The shared medium of in-memory nodes: who is connected, and what is held back."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._nodes: dict[str, MemoryIpfsNode] = {}
        self._links: set[frozenset[str]] = set()
        self._held: set[str] = set()
        self.gets: list[tuple[str, str]] = []

    def node(self, name: str | None = None) -> MemoryIpfsNode:
        """A new node on this swarm (peer id `name`, or a fresh one)."""
        with self._cond:
            peer_id = name or f"mem{len(self._nodes) + 1}"
            if peer_id in self._nodes:
                raise IpfsError(f"peer id {peer_id} is taken on this swarm")
            node = MemoryIpfsNode(self, peer_id)
            self._nodes[peer_id] = node
            return node

    def hold(self, cid: str) -> None:
        """Gets of `cid` wait (then time out) until `release(cid)`."""
        with self._cond:
            self._held.add(cid)

    def release(self, cid: str) -> None:
        with self._cond:
            self._held.discard(cid)
            self._cond.notify_all()

    # -- used by the nodes -----------------------------------------------------------

    def _link(self, a: str, b: str) -> None:
        with self._cond:
            if b not in self._nodes or self._nodes[b].closed:
                raise IpfsTimeout(f"no peer {b} answers")
            self._links.add(frozenset((a, b)))
            self._cond.notify_all()

    def _peers_of(self, peer_id: str) -> list[str]:
        with self._cond:
            return sorted(
                other
                for link in self._links
                if peer_id in link
                for other in link - {peer_id}
                if not self._nodes[other].closed
            )

    def _find(self, peer_id: str, cid: str) -> bytes | None:
        """The block from this node or a connected one (the caller holds the lock)."""
        if cid in self._held:
            return None
        for holder in (peer_id, *self._peers_of(peer_id)):
            data = self._nodes[holder]._blocks.get(cid)
            if data is not None:
                return data
        return None

    def _get(self, peer_id: str, cid: str, timeout: float) -> bytes:
        deadline = self._clock() + max(0.0, timeout)
        with self._cond:
            self.gets.append((peer_id, cid))
            while True:
                data = self._find(peer_id, cid)
                if data is not None:
                    return data
                left = deadline - self._clock()
                if left <= 0:
                    raise IpfsTimeout(f"{cid} not found within {timeout:g} s")
                self._cond.wait(left)

    def _stored(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _deliver(self, sender: str, topic: str, data: bytes) -> None:
        message = PubsubMessage(from_peer=sender, data=data, topic=topic)
        for peer in (sender, *self._peers_of(sender)):
            self._nodes[peer]._deliver(message)


class _MemorySubscription(Subscription):
    def __init__(self, node: MemoryIpfsNode, topic: str) -> None:
        self._node = node
        self._topic = topic
        self._queue: queue.Queue[PubsubMessage] = queue.Queue()
        self._closed = False

    @property
    def topic(self) -> str:
        return self._topic

    def next_message(self, timeout: float) -> PubsubMessage | None:
        if self._closed or self._node.closed:
            raise IpfsUnavailable("the subscription is closed")
        try:
            return self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        self._closed = True
        self._node._unsubscribe(self)


class MemoryIpfsNode(IpfsNode):
    """One node on a `MemorySwarm` (make it with `swarm.node()`)."""

    def __init__(self, swarm: MemorySwarm, peer_id: str) -> None:
        self._swarm = swarm
        self._id = peer_id
        self._blocks: dict[str, bytes] = {}
        self._subs: list[_MemorySubscription] = []
        self._lock = threading.Lock()
        self.closed = False
        self.published: list[tuple[str, bytes]] = []

    def _check_open(self) -> None:
        if self.closed:
            raise IpfsUnavailable("the in-memory IPFS node is closed")

    def add(self, data: bytes) -> str:
        self._check_open()
        data = check_payload(data, MAX_OBJECT_BYTES, "object")
        cid = cid_for_bytes(data)
        with self._lock:
            self._blocks[cid] = data
        self._swarm._stored()
        return cid

    def get(self, cid: str, timeout: float, max_bytes: int) -> bytes:
        self._check_open()
        if not isinstance(cid, str) or not is_valid_cid(cid):
            raise IpfsError(f"not a raw sha2-256 CID: {cid!r:.80}")
        data = self._swarm._get(self._id, cid, timeout)
        if len(data) > max_bytes:
            raise IpfsTooLarge(f"{cid} is {len(data)} bytes; the limit is {max_bytes}")
        return data

    def remove(self, cid: str) -> bool:
        self._check_open()
        if not isinstance(cid, str) or not is_valid_cid(cid):
            raise IpfsError(f"not a raw sha2-256 CID: {cid!r:.80}")
        with self._lock:
            return self._blocks.pop(cid, None) is not None

    def publish(self, topic: str, data: bytes) -> None:
        self._check_open()
        check_topic(topic)
        data = check_payload(data, MAX_MESSAGE_BYTES, "message")
        self.published.append((topic, data))
        self._swarm._deliver(self._id, topic, data)

    def subscribe(self, topic: str) -> Subscription:
        self._check_open()
        check_topic(topic)
        sub = _MemorySubscription(self, topic)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: _MemorySubscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def _deliver(self, message: PubsubMessage) -> None:
        with self._lock:
            subs = [s for s in self._subs if s.topic == message.topic]
        for sub in subs:
            sub._queue.put(message)

    def peers(self) -> list[str]:
        self._check_open()
        return self._swarm._peers_of(self._id)

    def peer_id(self) -> str:
        self._check_open()
        return self._id

    def addresses(self) -> list[str]:
        self._check_open()
        return [f"/memory/0/p2p/{self._id}"]

    def connect(self, multiaddr: str) -> None:
        self._check_open()
        self._swarm._link(self._id, check_multiaddr(multiaddr))

    def close(self) -> None:
        self.closed = True
        with self._lock:
            subs, self._subs = self._subs, []
        for sub in subs:
            sub._closed = True
