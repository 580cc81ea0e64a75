"""The account directory (network state rule 6), kept one record at a time.

Rule 6 (network/state.py): each account's *current* account record is its latest
(`created`, ties by the smallest CID); a normalised username is owned by the account
whose current record claims it earliest (`created`, then CID); an owner shows the
name bare, every other claimant ``name#xxxx`` (network/usernames.py writes the rule
down). An entry also lists the account's delegated and revoked node keys.

`derive_state` used to build the directory from every account record each time it
ran: with 20,000 fresh accounts held (anyone can sign those) that was 0.8 s of a
state derivation, and a node derives the state again after any record arrived
(bench/fresh_accounts.py). `AccountDirectory` takes each account record and
delegation once, as it arrives, and rebuilds at `snapshot` only the entries whose
inputs changed since the last one:
- a new current claim changes its account's entry, and the owner of the name it left
  and of the name it took (those two owners' entries change; every other claimant
  of those names still shows ``name#xxxx``);
- a delegation changes its account's entry.
Each name keeps its current claimants in a heap (ordered as ownership is decided), so
a flood of claims to one name costs O(log n) each, not a scan of the claimants.

`derive_state` builds a directory from scratch through the same class, so there is
one implementation of the rule; tests/test_directory.py checks it, fed in any order
and snapshotted at any point, against network/usernames.py's own functions.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from network import usernames
from network.records import AccountRecord, DelegationRecord, SignedRecord
from network.validate import DelegationIndex, Delegations


@dataclass(frozen=True, slots=True)
class AccountEntry:
    """One account in the directory.

    Attributes:
        account: the account key.
        username: its current normalised username claim.
        display_name: the name bare if it owns it, else ``name#xxxx``.
        owns_name: whether it owns `username`.
        nodes: node keys with a delegation that is not revoked, sorted.
        revoked_nodes: node keys it revoked, sorted.
        record_cid: the CID of the current account record.
    """

    account: bytes
    username: str
    display_name: str
    owns_name: bool
    nodes: tuple[bytes, ...]
    revoked_nodes: tuple[bytes, ...]
    record_cid: str


@dataclass(frozen=True, slots=True)
class _Claim:
    created: int
    cid: str
    name: str  # normalised

    def newer_than(self, other: _Claim) -> bool:
        """Whether this claim replaces `other` as its account's current one."""
        return usernames.replaces(self.created, self.cid, other.created, other.cid)


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """The directory at one moment (copies: later additions do not change it).

    Attributes:
        accounts: account key -> entry, for every account with an account record.
        name_owners: normalised username -> owning account.
        ignored: CIDs of account records whose username does not normalise
            (validation refuses them; they must never break the state).
    """

    accounts: dict[bytes, AccountEntry]
    name_owners: dict[str, bytes]
    ignored: frozenset[str]


class AccountDirectory:
    """Rule 6 over account records and delegations added one at a time."""

    def __init__(self) -> None:
        self._current: dict[bytes, _Claim] = {}
        # name -> heap of (created, cid, account) (usernames.owner_order, then the
        # account) of claims that were current when pushed; an item whose claim is no
        # longer current is dropped when it reaches the top (`_settle_owner`).
        self._claimants: dict[str, list[tuple[int, str, bytes]]] = {}
        self._owners: dict[str, bytes] = {}
        # account -> its delegated node key, or a set of them once it has two (most
        # accounts have one node: a set each cost 120 bytes an account in a flood)
        self._nodes: dict[bytes, bytes | set[bytes]] = {}
        self._revoked: dict[bytes, set[bytes]] = {}
        self._ignored: set[str] = set()
        self._entries: dict[bytes, AccountEntry] = {}
        self._dirty: set[bytes] = set()
        self._snapshot: DirectorySnapshot | None = None

    def add_account(self, cid: str, account: bytes, username: str, created: int) -> None:
        """An account record (its CID, account key, username and `created`)."""
        try:
            name = usernames.normalize(username)
        except usernames.UsernameError:
            self._ignored.add(cid)
            self._snapshot = None
            return
        claim = _Claim(created, cid, name)
        old = self._current.get(account)
        if old is not None and not claim.newer_than(old):
            return
        self._current[account] = claim
        self._dirty.add(account)
        heapq.heappush(
            self._claimants.setdefault(name, []), (*usernames.owner_order(created, cid), account)
        )
        self._settle_owner(name)
        if old is not None and old.name != name:
            self._settle_owner(old.name)
        self._snapshot = None

    def add_grant(self, account: bytes, node: bytes) -> None:
        """A delegation of `node` by `account` that is not a revocation."""
        nodes = self._nodes.get(account)
        if nodes is None:
            self._nodes[account] = node
        elif isinstance(nodes, bytes):
            if nodes == node:
                return
            self._nodes[account] = {nodes, node}
        elif node in nodes:
            return
        else:
            nodes.add(node)
        self._touch(account)

    def add_revocation(self, account: bytes, node: bytes) -> None:
        revoked = self._revoked.setdefault(account, set())
        if node not in revoked:
            revoked.add(node)
            self._touch(account)

    def snapshot(self) -> DirectorySnapshot:
        """The directory now; entries are rebuilt only for accounts that changed."""
        if self._snapshot is None:
            for account in self._dirty:
                self._entries[account] = self._entry(account)
            self._dirty.clear()
            self._snapshot = DirectorySnapshot(
                accounts=dict(self._entries),  # (lookups only: the order is not part of it)
                name_owners=dict(self._owners),
                ignored=frozenset(self._ignored),
            )
        return self._snapshot

    def _touch(self, account: bytes) -> None:
        if account in self._current:
            self._dirty.add(account)
            self._snapshot = None

    def _settle_owner(self, name: str) -> None:
        """Find `name`'s owner again; the entries of an old and a new owner change."""
        heap = self._claimants[name]
        while heap:
            _, cid, account = heap[0]
            current = self._current.get(account)
            if current is not None and current.cid == cid:
                break
            heapq.heappop(heap)  # (that account's current claim moved on)
        before = self._owners.get(name)
        after = heap[0][2] if heap else None
        if after is None:
            self._owners.pop(name, None)
            del self._claimants[name]
        else:
            self._owners[name] = after
        if before != after:
            for account in (before, after):
                if account is not None:
                    self._dirty.add(account)

    def _granted(self, account: bytes) -> set[bytes]:
        nodes = self._nodes.get(account)
        if nodes is None:
            return set()
        return {nodes} if isinstance(nodes, bytes) else nodes

    def _entry(self, account: bytes) -> AccountEntry:
        claim = self._current[account]
        owns = self._owners.get(claim.name) == account
        revoked = self._revoked.get(account, set())
        return AccountEntry(
            account=account,
            username=claim.name,
            display_name=usernames.display_name(account, claim.name, self._owners),
            owns_name=owns,
            nodes=tuple(sorted(self._granted(account) - revoked)),
            revoked_nodes=tuple(sorted(revoked)),
            record_cid=claim.cid,
        )


def directory_of(
    accounts: Iterable[tuple[str, AccountRecord]], delegations: Delegations
) -> DirectorySnapshot:
    """Rule 6 from scratch: the directory of these account records (CID, record)
    and delegations."""
    d = AccountDirectory()
    for account, node in delegations.grants:
        d.add_grant(account, node)
    for account, node in delegations.revoked_at:
        d.add_revocation(account, node)
    for cid, a in accounts:
        d.add_account(cid, a.account, a.username, a.created)
    return d.snapshot()


@dataclass(frozen=True, slots=True)
class Identities:
    """The account and delegation records a holder keeps indexed, for derive_state.

    Attributes:
        delegations: the delegation rule over every held delegation. A live view
            (`DelegationIndex.view`): read it under the lock that guards the adds.
        directory: rule 6's directory at the snapshot.
        records: how many account and delegation records are held.
    """

    delegations: Delegations
    directory: DirectorySnapshot
    records: int


class IdentityBook:
    """Account and delegation records as they arrive: the delegation index that
    validation asks and the directory derive_state shows, each updated once a record."""

    KINDS = frozenset({AccountRecord.KIND, DelegationRecord.KIND})  # the kinds it indexes

    def __init__(self) -> None:
        self.delegations = DelegationIndex()
        self._directory = AccountDirectory()
        self._records = 0

    def add(self, cid: str, signed: SignedRecord) -> bool:
        """Index `signed` if it is an account or delegation record (True), else False."""
        r = signed.record
        if isinstance(r, AccountRecord):
            self._directory.add_account(cid, r.account, r.username, r.created)
        elif isinstance(r, DelegationRecord):
            self.delegations.add(r)
            if r.revoked:
                self._directory.add_revocation(r.account, r.node)
            else:
                self._directory.add_grant(r.account, r.node)
        else:
            return False
        self._records += 1
        return True

    def snapshot(self) -> Identities:
        return Identities(self.delegations.view, self._directory.snapshot(), self._records)
