"""The node's rate limits, fetch backoff and timeouts, over the in-memory IpfsNode.

`network.ipfs.memory` stands in for kubo here (real kubo stays in
tests/test_network_nodes.py and tests/test_ipfs_embedded.py); the node, its
ledger (SQLite), its records and signatures are real.
"""

from __future__ import annotations

import os

import pytest

from engine import DEV
from network import rejection as R
from network import wire
from network.ipfs import IpfsError, IpfsTimeout, IpfsTooLarge, IpfsUnavailable, cid_for_bytes
from network.ipfs.memory import MemorySwarm
from network.node import Node, NodeConfig
from network.nodeparts.backoff import FetchBackoff
from network.nodeparts.ratelimit import PEER_BURST, PEER_RATE_PER_S, PeerRateLimiter
from tests.netutil import make_profile, wait_until

FETCH_TIMEOUT_S = 0.2


@pytest.fixture
def swarm() -> MemorySwarm:
    return MemorySwarm()


@pytest.fixture
def net(tmp_path, swarm):
    """A started node on the swarm and a peer connected to it."""
    node = _started_node(tmp_path, swarm, FETCH_TIMEOUT_S)
    peer = swarm.node("peer")
    peer.connect(node.ipfs.addresses()[0])
    try:
        yield node, peer
    finally:
        node.stop()


def _started_node(tmp_path, swarm: MemorySwarm, fetch_timeout_s: float) -> Node:
    """A started node "me" on the swarm; its parts take `fetch_timeout_s` when built."""
    profile = make_profile(tmp_path / "me", "memory")
    config = NodeConfig(
        data_dir=tmp_path / "me",
        params=DEV,
        listen=(),
        bootstrap=(),
        fetch_timeout_s=fetch_timeout_s,
    )
    node = Node(config, profile, profile.node_key(), ipfs=swarm.node("me"))
    node.start()
    return node


def _records_topic(node: Node) -> str:
    return wire.topics(node.config.network_name)["records"]


def _announce(peer, node: Node, cid: str) -> None:
    # A record too big to travel inline is announced by its CID and fetched.
    peer.publish(_records_topic(node), wire.encode_announcement(b"x" * 5000, cid))


def _drain(node: Node) -> None:
    for _ in range(200):
        node.poll(0.05)
        if all(sub._queue.empty() for sub in node._subs.values()):
            node.poll(0.05)
            return


def _fetched(node: Node) -> int:
    return node.status().fetch.done + node.status().fetch.failed


# ---- the in-memory node keeps the interface's contract ----------------------------


def test_memory_node_blocks_pubsub_limits_and_close(swarm):
    a, b = swarm.node(), swarm.node()
    data = b"hailstone"
    cid = a.add(data)
    assert cid == cid_for_bytes(data)
    with pytest.raises(IpfsTimeout):
        b.get(cid, 0.01, 100)  # not connected: nobody serves it
    b.connect(a.addresses()[0])
    assert b.get(cid, 1.0, 100) == data and b.peers() == [a.peer_id()]
    with pytest.raises(IpfsTooLarge):
        b.get(cid, 1.0, 3)
    with pytest.raises(IpfsError):
        b.get("not-a-cid", 1.0, 100)
    sub = b.subscribe("t")
    a.publish("t", b"hello")
    msg = sub.next_message(1.0)
    assert (msg.from_peer, msg.data, msg.topic) == (a.peer_id(), b"hello", "t")
    assert sub.next_message(0.0) is None
    swarm.hold(cid)
    with pytest.raises(IpfsTimeout):
        b.get(cid, 0.01, 100)
    swarm.release(cid)
    assert b.get(cid, 1.0, 100) == data
    a.close()
    with pytest.raises(IpfsUnavailable):
        a.add(b"more")
    assert b.peers() == []


# ---- the node above it ----------------------------------------------------------------


def test_a_flooding_peer_is_rate_limited_beyond_its_burst(net):
    node, peer = net
    # The node's limiter with a clock that stands still: no token comes back, so the
    # count is exact (the limiter's refill is tested in tests/test_nodeparts.py).
    node._sync.rates = PeerRateLimiter(
        rate_per_s=PEER_RATE_PER_S, burst=PEER_BURST, clock=lambda: 0.0
    )
    before = dict(node.status().rejected_by_reason)
    flood = int(PEER_BURST) + 50
    for i in range(flood):
        peer.publish(_records_topic(node), b"junk %d" % i)
    _drain(node)
    after = node.status().rejected_by_reason
    limited = after.get(R.RATE_LIMITED, 0) - before.get(R.RATE_LIMITED, 0)
    assert limited == 50
    # Every message got a verdict (junk within the burst is refused as malformed).
    assert sum(after.values()) - sum(before.values()) == flood


def test_a_fetch_that_times_out_backs_off_and_the_fetcher_goes_on(net, swarm):
    node, peer = net
    missing = cid_for_bytes(os.urandom(32))  # nobody holds it
    _announce(peer, node, missing)
    _drain(node)
    wait_until(lambda: node.status().fetch.timeouts == 1, 30, "the fetch to time out")
    gets = [c for _p, c in swarm.gets if c == missing]
    assert gets == [missing]
    # Announced again at once: it failed too recently to be fetched again.
    _announce(peer, node, missing)
    _drain(node)
    # A record announced after it is fetched: the fetcher survived the timeout, and
    # the repeated announcement was never queued before it.
    present = peer.add(b"some record bytes")
    _announce(peer, node, present)
    _drain(node)
    wait_until(lambda: node.status().fetch.done >= 1, 30, "the next fetch to finish")
    assert [c for _p, c in swarm.gets if c == missing] == [missing]


def test_after_the_backoff_a_failed_fetch_is_tried_again(net, swarm):
    node, peer = net
    node._sync.backoff = FetchBackoff(base_s=0.0)  # due again at once (its timing: test_nodeparts)
    missing = cid_for_bytes(os.urandom(32))
    _announce(peer, node, missing)
    _drain(node)
    wait_until(lambda: node.status().fetch.timeouts == 1, 30, "the first timeout")
    # The peer now has it: the next announcement fetches it again, and it arrives.
    data = os.urandom(64)
    missing_again = peer.add(data)
    assert missing_again != missing
    swarm.hold(missing_again)
    _announce(peer, node, missing_again)
    _drain(node)
    wait_until(lambda: node.status().fetch.timeouts == 2, 30, "a held object times out")
    swarm.release(missing_again)
    _announce(peer, node, missing_again)
    _drain(node)
    wait_until(lambda: node.status().fetch.done >= 1, 30, "fetched after the backoff")
    assert [c for _p, c in swarm.gets].count(missing_again) == 2


def test_a_slow_record_write_does_not_block_the_nodes_readers(net, tmp_path, monkeypatch):
    """No lock readers need is held across the ledger's fsync'd write: while one record
    is being written (held here), state(), status() and the compute side answer."""
    import threading

    from network import codec

    node, _peer = net
    other = make_profile(tmp_path / "other", "other")
    account = next(s for s in other.local_records() if s.kind == "account")
    entered, release = threading.Event(), threading.Event()
    real = node.ledger.add_records  # (records from the network are written in batches)

    def slow_write(rows):
        entered.set()
        release.wait(60)
        return real(rows)

    monkeypatch.setattr(node.ledger, "add_records", slow_write)
    before = node.status().records
    writer = threading.Thread(target=node.ingest, args=(codec.encode(account), "test"))
    writer.start()
    try:
        assert entered.wait(30)
        answers: list[object] = []
        reader = threading.Thread(
            target=lambda: answers.extend(
                [node.state(), node.status(), node.my_units(), node.next_block_task(idle=True)]
            )
        )
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "a reader waited for the ledger write"
        assert len(answers) == 4
        assert answers[1].records == before  # held only once it is durable
    finally:
        release.set()
        writer.join(30)
    assert node.status().records == before + 1


def test_spot_check_selection_never_waits_on_ipfs(swarm, tmp_path):
    """The compute loop asks for a spot-check; the evidence is fetched on the node's
    evidence thread, and the task comes once it is there (held here until released)."""
    import threading

    from engine import verify_range

    # A held fetch waits for the release, not for the fixture's 0.2 s deadline: with
    # that, a release later than 0.2 s after the fetch began (a loaded machine) found
    # the evidence already given up on, and its retry came after the test's wait.
    node = _started_node(tmp_path, swarm, fetch_timeout_s=60.0)
    other_profile = make_profile(tmp_path / "other", "other")
    other_ipfs = swarm.node("other")
    other = Node(
        NodeConfig(data_dir=tmp_path / "other", params=DEV, listen=(), bootstrap=()),
        other_profile,
        other_profile.node_key(),
        ipfs=other_ipfs,
    )
    other.start()
    try:
        other_ipfs.connect(node.ipfs.addresses()[0])
        other._reannounce()  # its identity records again, now that it is connected
        a = other.next_assignment()
        work_cid = other.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu"))
        evidence_cid = other.work_record(work_cid).evidence_cid
        wait_until(
            lambda: node.poll(0.05) is not None and node.work_record(work_cid),
            30,
            "the work record to arrive",
        )
        callers: list[tuple[str, str]] = []
        real_get = node.ipfs.get

        def get(cid, timeout, max_bytes):
            callers.append((threading.current_thread().name, cid))
            return real_get(cid, timeout, max_bytes)

        node.ipfs.get = get
        swarm.hold(evidence_cid)
        assert node.next_block_task(idle=True) is None  # asked for, not waited for
        wait_until(lambda: ("hailstone-evidence", evidence_cid) in callers, 30, "the fetch")
        swarm.release(evidence_cid)
        task = wait_until(lambda: node.next_block_task(idle=True), 30, "the spot-check")
        assert (task.purpose, task.work_cid) == ("spot-check", work_cid)
        assert all(name == "hailstone-evidence" for name, c in callers if c == evidence_cid)
    finally:
        other.stop()
        node.stop()
