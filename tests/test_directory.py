"""Identity records indexed as they arrive: the same rule as built from scratch.

`network.directory.AccountDirectory` (rule 6 of network/state.py) and
`network.validate.DelegationIndex` are fed one record at a time, in any order and
with snapshots taken in between; each must equal what the rule gives from scratch
over the same records: network/usernames.py's `current_claims`, `owners` and
`display_name` for the directory, `Delegations.of` for delegations. And the record
store's state, derived with the indexed identities, must equal `derive_state` over
every record.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from network import usernames
from network.directory import AccountDirectory, IdentityBook
from network.records import DelegationRecord
from network.rejection import Accepted
from network.state import VERIFIED, derive_state
from network.validate import DelegationIndex, Delegations
from tests import test_state as S
from tests.test_state import ALICE, BOB, CAROL, DAVE, PARAMS, T0

ACCOUNTS = [bytes([i]) * 32 for i in range(1, 6)]
NODES = [bytes([0x80 + i]) * 32 for i in range(4)]
NAMES = ["alice", "Alice", "bob", "carol", "dave"]  # ("Alice" normalises to "alice")

claims = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(NAMES), st.integers(0, 5),
              st.integers(0, 10**6)),
    max_size=25,
)
delegations = st.lists(
    st.tuples(st.sampled_from(ACCOUNTS), st.sampled_from(NODES), st.integers(0, 5),
              st.sampled_from([0, 1, 4]), st.booleans()),  # (expires: never, or so long after)
    max_size=20,
)


def _delegation(account: bytes, node: bytes, created: int, expires: int, revoked: bool) -> DelegationRecord:
    return DelegationRecord(account=account, node=node, created=T0 + created,
                            expires=0 if revoked or not expires else T0 + created + expires,
                            revoked=revoked)


def _expected(claim_list: list[usernames.Claim], grants: list[DelegationRecord]) -> dict:
    """Rule 6 from scratch, by network/usernames.py's functions."""
    current = usernames.current_claims(claim_list)
    owner_map = usernames.owners(claim_list)
    out = {}
    for account, c in current.items():
        revoked = {d.node for d in grants if d.account == account and d.revoked}
        nodes = {d.node for d in grants if d.account == account and not d.revoked}
        out[account] = (
            c.normalized,
            usernames.display_name(account, c.username, owner_map),
            owner_map.get(c.normalized) == account,
            tuple(sorted(nodes - revoked)),
            tuple(sorted(revoked)),
            c.cid,
        )
    return {"accounts": out, "owners": owner_map}


def _seen(directory: AccountDirectory) -> dict:
    snap = directory.snapshot()
    return {
        "accounts": {
            a: (e.username, e.display_name, e.owns_name, e.nodes, e.revoked_nodes, e.record_cid)
            for a, e in snap.accounts.items()
        },
        "owners": snap.name_owners,
    }


@settings(max_examples=300, deadline=None)
@given(claims, delegations, st.randoms(use_true_random=False))
def test_the_directory_fed_in_any_order_equals_the_rule_from_scratch(c, d, rnd) -> None:
    # (distinct CIDs, as content addresses are; random ones order the ties)
    claim_list = [usernames.Claim(account=a, username=n, created=t, cid=f"cid{x:07d}-{i}")
                  for i, (a, n, t, x) in enumerate(c)]
    grants = [_delegation(*g) for g in d]
    events = [("claim", x) for x in claim_list] + [("deleg", x) for x in grants]
    rnd.shuffle(events)
    directory = AccountDirectory()
    seen_claims: list[usernames.Claim] = []
    seen_grants: list[DelegationRecord] = []
    for kind, x in events:
        if kind == "claim":
            directory.add_account(x.cid, x.account, x.username, x.created)
            seen_claims.append(x)
        elif x.revoked:
            directory.add_revocation(x.account, x.node)
            seen_grants.append(x)
        else:
            directory.add_grant(x.account, x.node)
            seen_grants.append(x)
        if rnd.random() < 0.3:  # a snapshot in between must be right at that point
            assert _seen(directory) == _expected(seen_claims, seen_grants)
    assert _seen(directory) == _expected(claim_list, grants)


def test_a_snapshot_is_not_changed_by_later_records() -> None:
    directory = AccountDirectory()
    directory.add_account("cid1", ACCOUNTS[0], "alice", 5)
    before = directory.snapshot()
    directory.add_account("cid0", ACCOUNTS[1], "alice", 1)  # an earlier claim takes the name
    directory.add_grant(ACCOUNTS[0], NODES[0])
    assert before.accounts[ACCOUNTS[0]].owns_name and before.accounts[ACCOUNTS[0]].nodes == ()
    assert before.name_owners == {"alice": ACCOUNTS[0]}
    after = directory.snapshot()
    assert not after.accounts[ACCOUNTS[0]].owns_name
    assert after.accounts[ACCOUNTS[0]].display_name == f"alice#{ACCOUNTS[0].hex()[:4]}"
    assert after.accounts[ACCOUNTS[0]].nodes == (NODES[0],)
    assert after.name_owners == {"alice": ACCOUNTS[1]}


def test_a_username_that_does_not_normalise_is_ignored_not_fatal() -> None:
    directory = AccountDirectory()
    directory.add_account("bad", ACCOUNTS[0], "no", 1)  # (too short)
    assert directory.snapshot().accounts == {}
    assert directory.snapshot().ignored == frozenset({"bad"})


@settings(max_examples=200, deadline=None)
@given(delegations, delegations)
def test_the_delegation_index_with_a_batch_equals_the_rule_from_scratch(held, batch) -> None:
    held_records = [_delegation(*g) for g in held]
    batch_records = [_delegation(*g) for g in batch]
    index = DelegationIndex(held_records)
    expected = Delegations.of(held_records + batch_records)
    layer = index.layer()  # (as the record store ingests a batch)
    for d in batch_records:
        layer.add(d)
    got = layer.view
    assert dict(got.grants) == dict(expected.grants)
    assert dict(got.revoked_at) == dict(expected.revoked_at)
    assert dict(index.view.grants) == dict(Delegations.of(held_records).grants)  # unchanged
    for account in ACCOUNTS:
        for node in NODES:
            for t in range(T0, T0 + 11):
                assert got.verdict(account, node, t) == expected.verdict(account, node, t)


def _real_records() -> list[Accepted]:
    """Accounts (two claim one name), delegations, a revocation, work of four accounts
    on two units (one node revoked before its work), checks and a dispute."""
    out = [
        S.delegation(ALICE), S.delegation(BOB), S.delegation(CAROL), S.delegation(DAVE),
        S.delegation(DAVE, T0 + 50, revoked=True),
        S.account(ALICE, "ann", T0 + 2), S.account(BOB, "Ann", T0 + 1), S.account(CAROL, "cyd"),
        S.account(CAROL, "cyrus", T0 + 9), S.account(DAVE, "dave"),
    ]
    works = [S.work(ALICE, 0), S.work(BOB, 0), S.work(CAROL, 1), S.work(DAVE, 1),
             S.work(ALICE, 1, root=2)]
    out += works
    out += [S.check(BOB, works[0], 1, 5, True), S.check(CAROL, works[4], 2, 9, False),
            S.dispute(BOB, works[4], 2, 9)]
    return out


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.floats(0.3, 1.0))
def test_derive_state_with_indexed_identities_equals_it_from_every_record(rnd, share) -> None:
    """Any subset of a real signed set, in any order: the state derived from the
    activity records plus the identity book equals the state from every record."""
    every = [x for x in _real_records() if rnd.random() < share]
    rnd.shuffle(every)
    book = IdentityBook()
    activity = [x for x in every if not book.add(x.cid, x.record)]
    with_book = derive_state(activity, PARAMS, identities=book.snapshot())
    assert with_book == derive_state(every, PARAMS)
    assert with_book.record_count == len(every)


def test_the_real_set_exercises_what_the_comparison_covers() -> None:
    """(So the comparison above cannot pass by deriving nothing.)"""
    st_ = derive_state(_real_records(), PARAMS)
    assert st_.status_of(0) == VERIFIED and st_.confirmed_disputes
    assert st_.accounts[BOB.acct].owns_name and not st_.accounts[ALICE.acct].owns_name
    assert st_.accounts[CAROL.acct].username == "cyrus"
    assert st_.accounts[DAVE.acct].revoked_nodes == (DAVE.node_pub,)
    assert S.work(DAVE, 1).cid in st_.ignored  # (made after its node was revoked)
