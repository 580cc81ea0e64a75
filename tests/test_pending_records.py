"""network/nodeparts/pending.py: records waiting on a delegation or a work record."""

from __future__ import annotations

from network.nodeparts.pending import PendingRecords, Waiting
from tests.test_state import ALICE, delegation


def _waiting(key, since: float = 0.0) -> Waiting:
    signed = delegation(ALICE).record  # any parsed record: the index never reads it
    return Waiting(b"bytes", "peer", since, key, signed)


def test_only_the_records_waiting_on_what_arrived_are_taken() -> None:
    p = PendingRecords(limit=10)
    assert p.add("a", _waiting(("node", b"n1")))
    assert p.add("b", _waiting(("node", b"n2")))
    assert p.add("c", _waiting(("work", "w1")))
    assert p.add("d", _waiting(None))  # unknown wait: taken with anything
    assert len(p) == 4 and "a" in p
    taken = p.take({("node", b"n1")})
    assert sorted(w.key or ("?",) for w in taken) == [("?",), ("node", b"n1")]
    assert "a" not in p and "d" not in p and len(p) == 2
    assert [w.key for w in p.take({("work", "w1")})] == [("work", "w1")]
    assert p.take({("work", "w1")}) == []
    assert len(p) == 1


def test_a_full_set_refuses_and_discard_and_age_keep_the_index_true() -> None:
    p = PendingRecords(limit=2)
    assert p.add("a", _waiting(("node", b"n1"), since=1.0))
    assert p.add("b", _waiting(("node", b"n1"), since=5.0))
    assert not p.add("c", _waiting(("node", b"n1")))
    assert p.add("a", _waiting(("node", b"n1")))  # already held: fine, not a second copy
    p.discard("a")
    assert "a" not in p and len(p) == 1
    assert [w.since for w in p.take_older_than(10.0)] == [5.0]
    assert len(p) == 0 and p.take({("node", b"n1")}) == []
