"""Fair, bounded fetch scheduling (network/fetchqueue.py): a flood cannot starve."""

from __future__ import annotations

import pytest

from network.fetchqueue import FetchQueue


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_flooding_peer_cannot_starve_another_peers_fetch():
    q = FetchQueue(per_peer_queue=1000, per_peer_inflight=4, clock=Clock())
    for i in range(500):
        q.put("flood", ("record", f"junk{i}", "flood"))
    q.put("honest", ("record", "real", "honest"))
    taken = [q.get(timeout=0) for _ in range(2)]
    assert ("honest", ("record", "real", "honest")) in taken


def test_each_peer_holds_a_bounded_queue_and_drops_are_counted():
    q = FetchQueue(per_peer_queue=3, clock=Clock())
    assert [q.put("p", i) for i in range(5)] == [True, True, True, False, False]
    assert q.put("p", 0) is False  # already queued
    c = q.counters()
    assert c.backlog == 3 and c.dropped == 2


def test_a_peer_has_at_most_per_peer_inflight_fetches():
    q = FetchQueue(per_peer_inflight=2, clock=Clock())
    for i in range(5):
        q.put("p", i)
    assert q.get(timeout=0) is not None and q.get(timeout=0) is not None
    assert q.get(timeout=0) is None  # two in flight: the third waits
    q.done("p", ok=True)
    assert q.get(timeout=0) == ("p", 2)
    assert q.counters().inflight == 2 and q.counters().done == 1


def test_a_peer_whose_fetches_time_out_is_put_on_hold_for_the_window():
    clock = Clock()
    q = FetchQueue(per_peer_inflight=8, timeout_limit=2, timeout_window_s=60, clock=clock)
    for i in range(4):
        q.put("bad", i)
    for _ in range(2):
        peer, _job = q.get(timeout=0)
        q.done(peer, ok=False, timed_out=True)
    q.put("good", "g")
    # "bad" hit its limit: only "good" is served, then nothing until the window passes.
    assert q.get(timeout=0) == ("good", "g")
    assert q.get(timeout=0) is None
    c = q.counters()
    assert c.timeouts == 2 and c.failed == 2 and c.peers_on_hold == 1 and c.backlog == 2
    clock.t += 61
    assert q.get(timeout=0) == ("bad", 2)


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        FetchQueue(per_peer_inflight=0)


def test_a_peer_is_busy_while_its_jobs_are_queued_or_being_fetched():
    q = FetchQueue()
    assert not q.busy("a")
    q.put("a", "x")
    assert q.busy("a") and not q.busy("b")
    peer, job = q.get(timeout=0)
    assert (peer, job) == ("a", "x")
    assert q.busy("a")  # taken, not done
    q.done("a", ok=True)
    assert not q.busy("a")


def test_close_wakes_a_waiting_get_and_every_later_one_returns_none():
    import threading

    q = FetchQueue()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(q.get(timeout=3600)))
    waiter.start()
    q.close()
    waiter.join(30)
    assert not waiter.is_alive() and got == [None]
    q.put("a", "x")
    assert q.get(timeout=0) is None
