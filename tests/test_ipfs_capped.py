"""The bandwidth limit's token bucket and the paced IpfsNode (network/ipfs/capped.py).

Over the in-memory IpfsNode with an injected clock: a "sleep" advances the clock,
so every figure is exact and nothing waits in real time.
"""

from __future__ import annotations

import pytest

from network.ipfs import IpfsTimeout
from network.ipfs.capped import (
    GOSSIP_FANOUT,
    MIN_BURST_BYTES,
    RATE_WINDOW_S,
    CappedIpfsNode,
    RateWindow,
    TokenBucket,
)
from network.ipfs.memory import MemorySwarm

KIB = 1024


class FakeClock:
    """Monotonic seconds that move only when a test or a 'sleep' moves them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a wait of nothing would spin"
        self.slept.append(seconds)
        self.now += seconds


# -- the bucket --------------------------------------------------------------------------


def test_a_full_bucket_lets_a_burst_through_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(16 * KIB, clock)
    assert bucket.burst == 16 * KIB  # one second of the rate (above the minimum burst)
    assert bucket.reserve(16 * KIB) == 0.0  # the burst goes at once
    # The next 8 KiB must wait half a second, the next 8 KiB a second in all.
    assert bucket.reserve(8 * KIB) == pytest.approx(0.5)
    assert bucket.reserve(8 * KIB) == pytest.approx(1.0)
    clock.now += 1.0
    assert bucket.debt_s() == pytest.approx(0.0)
    assert bucket.reserve(4 * KIB) == pytest.approx(0.25)


def test_the_bucket_refills_to_its_burst_and_no_further() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4 * KIB, clock)
    assert bucket.burst == MIN_BURST_BYTES  # a slow limit still lets one record through
    bucket.reserve(MIN_BURST_BYTES)
    clock.now += 3600  # an hour idle refills only the burst
    assert bucket.reserve(MIN_BURST_BYTES) == 0.0
    assert bucket.reserve(4 * KIB) == pytest.approx(1.0)


def test_a_message_larger_than_the_burst_still_goes_later() -> None:
    clock = FakeClock()
    bucket = TokenBucket(8 * KIB, clock)
    # 64 KiB at 8 KiB/s with an 8 KiB burst: 7 s of debt, never refused.
    assert bucket.reserve(64 * KIB) == pytest.approx(7.0)
    assert bucket.debt_s() == pytest.approx(7.0)


def test_no_limit_never_waits_and_a_new_limit_starts_full() -> None:
    clock = FakeClock()
    bucket = TokenBucket(0, clock)
    assert bucket.reserve(10**9) == 0.0 and bucket.debt_s() == 0.0
    bucket.set_rate(8 * KIB)
    gen = bucket.generation
    assert bucket.reserve(8 * KIB) == 0.0
    assert bucket.reserve(8 * KIB) == pytest.approx(1.0)
    bucket.set_rate(0)
    assert bucket.generation == gen + 1
    assert bucket.debt_s() == 0.0
    with pytest.raises(ValueError):
        bucket.set_rate(-1)


def test_the_rate_window_averages_the_last_ten_seconds() -> None:
    clock = FakeClock()
    window = RateWindow(clock)
    for _ in range(20):  # 1 KiB a second for 20 s
        window.add(KIB)
        clock.now += 1.0
    assert window.total == 20 * KIB
    assert window.rate() == pytest.approx(KIB, rel=0.11)
    clock.now += RATE_WINDOW_S + 2  # quiet since: nothing in the window
    assert window.rate() == 0.0


# -- the paced node over the in-memory IpfsNode -----------------------------------------


@pytest.fixture()
def pair() -> tuple[MemorySwarm, object, object]:
    swarm = MemorySwarm()
    a, b = swarm.node("a"), swarm.node("b")
    b.connect(a.addresses()[0])
    return swarm, a, b


def test_a_burst_of_publishes_is_paced_and_every_message_arrives_in_order(pair) -> None:
    _swarm, a, b = pair
    clock = FakeClock()
    capped = CappedIpfsNode(a, 16 * KIB, clock=clock, sleep=clock.sleep)
    sub = b.subscribe("t")
    start = clock.now
    payloads = [bytes([i]) * (2 * KIB) for i in range(40)]  # 80 KiB, one peer
    for p in payloads:
        capped.publish("t", p)
    # 80 KiB at 16 KiB/s after a 16 KiB burst: the last one went at 4 s, not before.
    assert clock.now - start == pytest.approx(4.0)
    got = [sub.next_message(0).data for _ in payloads]
    assert got == payloads  # deferred, none dropped, order kept
    stats = capped.traffic()
    assert stats.sent_bytes == 80 * KIB
    assert stats.deferred == 40 - 8  # the first 8 fitted the burst
    assert stats.waited_s == pytest.approx(sum(clock.slept))
    assert stats.limit_bytes_s == 16 * KIB


def test_a_publish_is_charged_once_per_peer_gossip_sends_it_to() -> None:
    swarm = MemorySwarm()
    hub = swarm.node("hub")
    for i in range(GOSSIP_FANOUT + 3):
        swarm.node(f"p{i}").connect(hub.addresses()[0])
    clock = FakeClock()
    capped = CappedIpfsNode(hub, 64 * KIB, clock=clock, sleep=clock.sleep)
    capped.publish("t", b"x" * KIB)
    # Nine peers, but gossipsub sends to its mesh: GOSSIP_FANOUT copies at most.
    assert capped.traffic().sent_bytes == GOSSIP_FANOUT * KIB


def test_gets_wait_for_the_incoming_budget_within_their_deadline(pair) -> None:
    _swarm, a, b = pair
    clock = FakeClock()
    capped = CappedIpfsNode(b, 8 * KIB, clock=clock, sleep=clock.sleep)
    cids = [a.add(bytes([i]) * (8 * KIB)) for i in range(4)]
    start = clock.now
    assert capped.get(cids[0], 10.0, 64 * KIB) == bytes([0]) * (8 * KIB)  # the burst
    assert capped.get(cids[1], 10.0, 64 * KIB) == bytes([1]) * (8 * KIB)  # in credit still
    # Two 8 KiB objects at 8 KiB/s: the third get waits one second first.
    assert capped.get(cids[2], 10.0, 64 * KIB) == bytes([2]) * (8 * KIB)
    assert clock.now - start == pytest.approx(1.0)
    assert capped.traffic().received_bytes == 24 * KIB


def test_a_get_still_overdrawn_at_its_deadline_times_out_and_succeeds_later(pair) -> None:
    swarm, a, b = pair
    clock = FakeClock()
    capped = CappedIpfsNode(b, 8 * KIB, clock=clock, sleep=clock.sleep)
    big = a.add(b"b" * (64 * KIB))
    small = a.add(b"s" * KIB)
    capped.get(big, 10.0, 128 * KIB)  # 56 KiB over: 7 s of debt
    start = clock.now
    with pytest.raises(IpfsTimeout, match="bandwidth limit"):
        capped.get(small, 2.0, 128 * KIB)
    assert clock.now - start == pytest.approx(2.0)  # the deadline held
    assert swarm.gets.count(("b", small)) == 0  # it never asked the network
    stats = capped.traffic()
    assert stats.deferred_gets_timed_out == 1
    # Tried again later (as the node's fetch backoff does): it arrives, nothing lost.
    assert capped.get(small, 10.0, 128 * KIB) == b"s" * KIB
    assert clock.now - start == pytest.approx(7.0)


def test_others_gossip_counts_against_the_incoming_budget_our_own_does_not(pair) -> None:
    _swarm, a, b = pair
    clock = FakeClock()
    capped = CappedIpfsNode(b, 8 * KIB, clock=clock, sleep=clock.sleep)
    sub = capped.subscribe("t")
    a.publish("t", b"x" * (16 * KIB))
    capped.publish("t", b"y" * 100)  # ours comes back from our own peer id
    assert sub.next_message(0).from_peer == "a"
    assert sub.next_message(0).from_peer == "b"
    assert capped.traffic().received_bytes == 16 * KIB
    cid = a.add(b"z" * 10)
    start = clock.now
    capped.get(cid, 5.0, 100)  # waits for the gossip's 8 KiB of debt first
    assert clock.now - start == pytest.approx(1.0)


def test_removing_the_limit_ends_a_wait_and_everything_passes_through(pair) -> None:
    _swarm, a, b = pair
    clock = FakeClock()
    capped = CappedIpfsNode(a, 8 * KIB, clock=clock)

    def sleep(seconds: float) -> None:
        clock.now += seconds
        capped.set_limit(0)  # the volunteer lifts the limit while a publish waits

    capped._sleep = sleep
    sub = b.subscribe("t")
    capped.publish("t", b"1" * (8 * KIB))
    capped.publish("t", b"2" * (80 * KIB))  # would wait 9 s at 8 KiB/s
    assert clock.now - 1000.0 == pytest.approx(0.5)  # one slice, then no limit
    assert [sub.next_message(0).data[:1] for _ in range(2)] == [b"1", b"2"]
    assert capped.limit_bytes_s == 0
    cid = b.add(b"q")
    assert capped.get(cid, 1.0, 10) == b"q"
    assert capped.add(b"local") == a.add(b"local")
    assert capped.peers() == ["b"] and capped.peer_id() == "a"
    capped.close()
    assert a.closed
