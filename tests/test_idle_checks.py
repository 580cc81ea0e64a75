"""An idle node spot-checks only works that few accounts have checked
(network/nodeparts/checks.py IDLE_CHECKERS), over the in-memory IpfsNode with real
records, signatures and blocks.

Found by bench/swarm.py: every idle node checked every other account's work, so check
records and evidence fetches grew with nodes x works (370 checks for 50 works at 16
nodes) and kept idle nodes busy.
"""

from __future__ import annotations

from engine import DEV, verify_range
from engine.cpu import CpuBackend
from network.ipfs.memory import MemorySwarm
from network.node import IDLE_CHECKERS, Node, NodeConfig
from tests.netutil import make_profile, wait_until


def _node(tmp_path, swarm: MemorySwarm, name: str, started: list[Node]) -> Node:
    profile = make_profile(tmp_path / name, name)
    ipfs = swarm.node(name)
    node = Node(
        NodeConfig(data_dir=tmp_path / name, params=DEV, listen=(), bootstrap=()),
        profile, profile.node_key(), ipfs=ipfs,
    )
    node.start()
    for other in started:  # a full mesh: every node serves every other's blocks
        ipfs.connect(other.ipfs.addresses()[0])
    started.append(node)
    for n in started:
        n._reannounce()  # identity records again, now that they are connected
    return node


def _poll_all(nodes: list[Node]) -> None:
    for n in nodes:
        n.poll(0.02)


def _spot_check(checker: Node, nodes: list[Node], first=None) -> tuple[str, str]:
    """Run one whole idle spot-check for real (every block the checker drew, on the CPU
    engine): (the work's CID, the spot-check record's CID)."""
    backend = CpuBackend(DEV)
    task = first or wait_until(lambda: _poll_all(nodes) or checker.next_block_task(idle=True),
                               60, f"{checker.config.data_dir.name}'s spot-check")
    while True:
        cid = checker.submit_block(task, backend.run_block(task.lo, task.hi))
        if cid:
            return task.work_cid, cid
        nxt = checker.next_block_task(idle=True)
        assert nxt is not None and nxt.work_cid == task.work_cid  # the same check goes on
        task = nxt


def test_idle_node_leaves_well_checked_work_to_its_budget(tmp_path) -> None:
    assert IDLE_CHECKERS == 2
    swarm = MemorySwarm()
    nodes: list[Node] = []
    try:
        me = _node(tmp_path, swarm, "myself", nodes)
        reporter = _node(tmp_path, swarm, "reporter", nodes)
        checkers = [_node(tmp_path, swarm, f"checker{i}", nodes) for i in range(IDLE_CHECKERS)]
        a = reporter.next_assignment()
        work_cid = reporter.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu"))
        evidence_cid = reporter.work_record(work_cid).evidence_cid
        for c in checkers:  # each spot-checks the work, for real
            checked, record_cid = _spot_check(c, nodes)
            assert checked == work_cid
            assert record_cid in {r.cid for r in c.ledger.records("spotcheck")}
        wait_until(lambda: _poll_all(nodes) or len(me._store.checkers(work_cid)) == IDLE_CHECKERS,
                   60, "both checks to reach me")
        asked = len(swarm.gets)
        for _ in range(10):
            _poll_all(nodes)
            assert me.next_block_task(idle=True) is None
        # Idle, it did not even ask for the evidence of a work checked twice already.
        assert not [g for g in swarm.gets[asked:] if g == (me.ipfs.peer_id(), evidence_cid)]
        # A budgeted check still picks any work: which one stays unpredictable.
        me._checks.spot_budget = 1.0
        task = wait_until(lambda: _poll_all(nodes) or me.next_block_task(idle=True),
                          60, "the budgeted spot-check")
        assert task.work_cid == work_cid and me._checks.spot_budget == 0.0
    finally:
        for n in nodes:
            n.stop()


def test_evidence_waits_while_the_ipfs_backend_is_busy(tmp_path) -> None:
    """Evidence (a spot-check's, which can wait) is not fetched while the backend has
    EVIDENCE_MAX_PENDING fetches still running: records and heads keep the rest of
    its slots (at 50 nodes evidence fetches past their timeout took all 32)."""
    import time

    from network.nodeparts.checks import EVIDENCE_MAX_PENDING

    swarm = MemorySwarm()
    nodes: list[Node] = []
    try:
        me = _node(tmp_path, swarm, "myself", nodes)
        reporter = _node(tmp_path, swarm, "reporter", nodes)
        a = reporter.next_assignment()
        work_cid = reporter.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu"))
        evidence_cid = reporter.work_record(work_cid).evidence_cid
        wait_until(lambda: _poll_all(nodes) or me._store.work(work_cid) is not None,
                   60, "the work record to reach me")
        busy = [True]
        me.ipfs.pending_fetches = lambda: EVIDENCE_MAX_PENDING if busy[0] else 0
        until = time.monotonic() + 1.5
        while time.monotonic() < until:
            _poll_all(nodes)
            assert me.next_block_task(idle=True) is None
            time.sleep(0.1)
        mine = me.ipfs.peer_id()
        assert (mine, evidence_cid) not in swarm.gets
        busy[0] = False
        task = wait_until(lambda: _poll_all(nodes) or me.next_block_task(idle=True),
                          60, "the spot-check once the backend is free")
        assert task.work_cid == work_cid and (mine, evidence_cid) in swarm.gets
    finally:
        for n in nodes:
            n.stop()


def test_spot_checks_go_to_the_least_checked_works_in_an_order_of_each_nodes_own(
    tmp_path,
) -> None:
    """Fewest checkers first, then by a hash of the checker's node key and the work:
    in CID order every node that chose at the same moment checked the same work
    (bench/swarm.py, 24 nodes: about 12 check records per work)."""
    import hashlib

    swarm = MemorySwarm()
    nodes: list[Node] = []
    try:
        me = _node(tmp_path, swarm, "myself", nodes)
        reporter = _node(tmp_path, swarm, "reporter", nodes)
        checker = _node(tmp_path, swarm, "checker", nodes)
        works = []
        for _ in range(3):
            a = reporter.next_assignment()
            works.append(reporter.submit_unit(a, verify_range(DEV, a.lo, a.hi, "cpu")))
        wait_until(lambda: _poll_all(nodes) or all(me._store.work(w) for w in works),
                   60, "the work records to reach me")
        checked, _record = _spot_check(checker, nodes)
        wait_until(lambda: _poll_all(nodes) or me._store.checkers(checked),
                   60, "the check to reach me")
        order = [cid for cid, _w, _n in me._checks._spot_check_order()]
        unchecked = sorted((w for w in works if w != checked),
                           key=lambda w: hashlib.sha256(me._services.node_pub + w.encode()).digest())
        assert order == [*unchecked, checked]
    finally:
        for n in nodes:
            n.stop()
