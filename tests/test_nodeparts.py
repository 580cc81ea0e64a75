"""The node's parts on their own (network/nodeparts/): deterministic, with a clock
or a fetch function passed in."""

from __future__ import annotations

import threading

import pytest

from network.nodeparts.backoff import FetchBackoff
from network.nodeparts.evidence import PENDING, EvidenceFetcher
from network.nodeparts.looptime import LoopTime
from network.nodeparts.ratelimit import PeerRateLimiter
from tests.netutil import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_peer_gets_its_burst_then_its_rate():
    clock = Clock()
    limits = PeerRateLimiter(rate_per_s=10.0, burst=5.0, clock=clock)
    assert [limits.allow("p") for _ in range(6)] == [True] * 5 + [False]
    assert limits.allow("q")  # another peer has its own bucket
    clock.now += 0.25  # 2.5 tokens back
    assert [limits.allow("p") for _ in range(3)] == [True, True, False]
    clock.now += 3600  # never more than the burst
    assert sum(limits.allow("p") for _ in range(10)) == 5


def test_the_peer_table_is_bounded_and_forgets_the_least_recent():
    clock = Clock()
    limits = PeerRateLimiter(rate_per_s=1.0, burst=1.0, max_peers=2, clock=clock)
    assert limits.allow("a") and limits.allow("b")
    assert not limits.allow("a")  # a is now the most recent, b the least
    assert limits.allow("c")  # b is forgotten
    assert len(limits) == 2
    assert not limits.allow("a")  # a's empty bucket was kept
    assert limits.allow("b")  # b starts again with a full bucket


def test_bad_limits_are_refused():
    with pytest.raises(ValueError):
        PeerRateLimiter(rate_per_s=0.0)


def test_evidence_is_fetched_on_its_own_thread_a_few_at_a_time():
    gate = threading.Event()
    calls: list[tuple[str, str]] = []

    def fetch(cid: str):
        calls.append((threading.current_thread().name, cid))
        gate.wait(30)
        if cid == "broken":
            raise RuntimeError("a peer sent nonsense")
        return None if cid == "gone" else [cid.encode()]

    def take(cid: str):
        box: list = []

        def ready() -> bool:
            r = f.result(cid)
            if r is PENDING:
                return False
            box.append(r)
            return True

        wait_until(ready, 30, f"the evidence of {cid}")
        return box[0]

    f = EvidenceFetcher(fetch, ahead=2)
    f.start()
    try:
        assert f.result("w1") is PENDING and f.result("w2") is PENDING
        assert f.result("w3") is PENDING  # not even asked: two are on their way
        wait_until(lambda: calls, 30, "the first fetch")
        assert "w3" not in {c for _n, c in calls}
        gate.set()
        assert take("w1") == [b"w1"] and take("w2") == [b"w2"] and take("w3") == [b"w3"]
        assert take("gone") is None  # could not be had
        assert take("broken") is None  # the thread survives a failing fetch
        assert take("w4") == [b"w4"]
        assert {name for name, _ in calls} == {"hailstone-evidence"}
    finally:
        gate.set()
        f.stop(30)


def test_a_failed_fetch_waits_twice_as_long_each_time_up_to_the_cap():
    clock = Clock()
    b = FetchBackoff(base_s=5.0, max_s=12.0, give_up=3, clock=clock)
    assert b.due("c") and b.still_trying("c")
    assert [b.failed("c") for _ in range(4)] == [5.0, 10.0, 12.0, 12.0]
    assert not b.due("c") and not b.still_trying("c")
    clock.now += 11.9
    assert not b.due("c")
    clock.now += 0.1
    assert b.due("c")
    b.succeeded("c")
    assert b.still_trying("c") and b.failed("c") == 5.0  # forgotten: from the start


def test_the_backoff_table_is_bounded():
    clock = Clock()
    b = FetchBackoff(base_s=5.0, max_remembered=2, clock=clock)
    for cid in ("a", "b", "c"):
        b.failed(cid)
    assert b.due("a")  # the oldest failure was forgotten
    assert not b.due("b") and not b.due("c")


def _cids(n: int) -> list[str]:
    from network.ipfs import cid_for_bytes

    return sorted(cid_for_bytes(b"record %d" % i) for i in range(n))


def test_our_head_offers_only_what_changed():
    from network import wire
    from network.nodeparts.heads import HeadBook

    book = HeadBook()
    assert book.last_head_cid == ""
    first = book.our_head(_cids(10))
    assert len(first.new_objects) == wire.HEAD_PAGES + 1  # every page and the index
    assert first.count == 10 and book.last_head_cid == first.head_cid
    again = book.our_head(_cids(10))
    assert again.head_cid == first.head_cid and again.new_objects == ()
    more = book.our_head(_cids(11))  # one more record: its page and a new index
    assert more.head_cid != first.head_cid and len(more.new_objects) == 2
    book.forget_ours()  # an add failed: everything is offered again
    assert len(book.our_head(_cids(11)).new_objects) == wire.HEAD_PAGES + 1


def test_peer_heads_are_followed_until_held_completely():
    from network.nodeparts.heads import HeadBook

    book = HeadBook()
    assert not book.holds("p", "h1") and book.pages_held("p") == set()
    book.followed("p", "h1", {"page-a"}, complete=False)
    assert not book.holds("p", "h1") and book.pages_held("p") == {"page-a"}
    assert book.heads_completed == 0
    book.followed("p", "h1", {"page-a", "page-b"}, complete=True)
    assert book.holds("p", "h1") and not book.holds("p", "h2")
    assert book.heads_completed == 1
    book.forget_peers_except(["q"])
    assert not book.holds("p", "h1") and book.pages_held("p") == set()


def test_loop_time_sums_each_step_and_keeps_the_longest_even_one_that_raised() -> None:
    now = [0.0]
    lt = LoopTime(clock=lambda: now[0])
    for name, took in (("messages", 0.5), ("head", 2.0), ("messages", 0.25)):
        with lt.step(name):
            now[0] += took
    with pytest.raises(RuntimeError), lt.step("trust"):
        now[0] += 3.0
        raise RuntimeError("a step that failed still took its time")
    assert lt.snapshot() == {
        "spent_s": {"head": 2.0, "messages": 0.75, "trust": 3.0},
        "longest_s": 3.0,
        "longest": "trust",
    }
