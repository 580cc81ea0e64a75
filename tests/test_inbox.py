"""The subscription inbox (network/ipfs/inbox.py): senders served in turn, each in
its own order, memory bounded by dropping the heaviest sender's oldest, every drop
counted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.ipfs.base import PubsubMessage
from network.ipfs.inbox import MESSAGE_OVERHEAD_BYTES, FairInbox, message_cost


def _msg(sender: str, n: int, size: int = 10) -> PubsubMessage:
    return PubsubMessage(from_peer=sender, data=n.to_bytes(4, "big") + bytes(size), topic="t")


def _drain(inbox: FairInbox) -> list[PubsubMessage]:
    out = []
    while (m := inbox.take()) is not None:
        out.append(m)
    return out


def test_one_message_from_an_honest_peer_does_not_wait_behind_a_flood() -> None:
    inbox = FairInbox(max_bytes=10**9, max_messages=10**6)
    for i in range(1000):
        inbox.put(_msg("flooder", i))
    inbox.put(_msg("honest", 0))
    first_two = [inbox.take(), inbox.take()]
    assert "honest" in {m.from_peer for m in first_two if m is not None}
    assert len(inbox) == 999 and inbox.take_dropped() == {}


def test_senders_are_served_in_turn_each_in_its_own_order() -> None:
    inbox = FairInbox(max_bytes=10**9, max_messages=10**6)
    for i in range(3):
        inbox.put(_msg("a", i))
    inbox.put(_msg("b", 0))
    inbox.put(_msg("b", 1))
    taken = [(m.from_peer, m.data[:4]) for m in _drain(inbox)]
    assert taken == [
        ("a", (0).to_bytes(4, "big")),
        ("b", (0).to_bytes(4, "big")),
        ("a", (1).to_bytes(4, "big")),
        ("b", (1).to_bytes(4, "big")),
        ("a", (2).to_bytes(4, "big")),
    ]
    assert inbox.take() is None and len(inbox) == 0 and inbox.queued_bytes == 0


def test_over_budget_the_heaviest_senders_oldest_is_dropped_and_counted() -> None:
    cost = message_cost(_msg("x", 0))
    inbox = FairInbox(max_bytes=10 * cost, max_messages=10**6)
    for i in range(9):
        inbox.put(_msg("flooder", i))
    inbox.put(_msg("honest", 0))
    for i in range(9, 20):  # each over the budget: the flooder's oldest goes
        inbox.put(_msg("flooder", i))
    assert inbox.queued_bytes <= 10 * cost and len(inbox) == 10
    assert inbox.take_dropped() == {"flooder": 11}
    assert inbox.take_dropped() == {}  # (counted once)
    kept = _drain(inbox)
    assert [m for m in kept if m.from_peer == "honest"] == [_msg("honest", 0)]
    assert [int.from_bytes(m.data[:4], "big") for m in kept if m.from_peer == "flooder"] == list(
        range(11, 20)
    )


def test_the_message_budget_binds_as_well_and_an_oversized_message_is_dropped() -> None:
    inbox = FairInbox(max_bytes=10**9, max_messages=3)
    for i in range(5):
        inbox.put(_msg("a", i))
    assert len(inbox) == 3 and inbox.take_dropped() == {"a": 2}
    small = FairInbox(max_bytes=MESSAGE_OVERHEAD_BYTES + 100, max_messages=10)
    small.put(_msg("big", 0, size=1000))
    assert len(small) == 0 and small.take_dropped() == {"big": 1}
    with pytest.raises(ValueError):
        FairInbox(max_bytes=0, max_messages=1)


_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcd"), st.integers(0, 300)),
        st.tuples(st.just("take"), st.just(""), st.just(0)),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(ops=_ops, max_bytes=st.integers(1, 3000), max_messages=st.integers(1, 20))
def test_any_sequence_keeps_order_budget_fairness_and_accounts_for_every_message(
    ops, max_bytes, max_messages
) -> None:
    inbox = FairInbox(max_bytes=max_bytes, max_messages=max_messages)
    put: dict[str, list[PubsubMessage]] = {}
    taken: dict[str, list[PubsubMessage]] = {}
    dropped: dict[str, int] = {}
    serial = 0
    for op, sender, size in ops:
        if op == "put":
            m = _msg(sender, serial, size)
            serial += 1
            weights = dict(inbox._bytes_of)
            weights[sender] = weights.get(sender, 0) + message_cost(m)
            inbox.put(m)
            put.setdefault(sender, []).append(m)
            assert inbox.queued_bytes <= max_bytes and len(inbox) <= max_messages
            now_dropped = inbox.take_dropped()
            if sum(now_dropped.values()) == 1:  # it came from the heaviest sender then
                (victim,) = now_dropped
                assert weights[victim] == max(weights.values())
            for s, n in now_dropped.items():
                dropped[s] = dropped.get(s, 0) + n
        else:
            m = inbox.take()
            if m is not None:
                taken.setdefault(m.from_peer, []).append(m)
    remaining = _drain(inbox)
    for m in remaining:
        taken.setdefault(m.from_peer, []).append(m)
    for sender, sent in put.items():
        got = taken.get(sender, [])
        # what a sender got through is the newest part of what it sent, minus the
        # dropped ones (the oldest at each drop), in its order
        assert len(got) + dropped.get(sender, 0) == len(sent)
        positions = [sent.index(m) for m in got]
        assert positions == sorted(positions)
    assert len(inbox) == 0 and inbox.queued_bytes == 0 and inbox.take() is None
