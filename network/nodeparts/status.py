"""What the node reports: `NodeStatus` (the status file, `main.py node status`, the
app's network page), `NodeEvent` (its event log) and `state_digest` (equal digests,
equal views: the swarm tests compare nodes by it).

Re-exported by network/node.py, where callers import them from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from network.fetchqueue import FetchCounters
from network.state import NetworkState


@dataclass(frozen=True, slots=True)
class NodeStatus:
    peer_id: str
    listen: tuple[str, ...]
    peers: int
    frontier: int
    frontier_bound: int
    units_verified: int
    records: int
    rejected: int
    rejected_by_reason: dict[str, int]
    outbox: int
    pending: int
    state_digest: str = ""
    leaderboard: tuple[tuple[str, int], ...] = ()
    fetch: FetchCounters | None = None
    # IPFS gets by what they fetched (head, page, bundle_index, bundle, record), pages
    # held already, not fetched (page_held), and head reads queued by the rule that
    # chose them (read_at_once, read_after_grace, read_backstop, read_ack,
    # read_again), and heads whose acknowledgements named records of our outbox
    # (ack_by_head): Sync.gets_by_kind.
    gets: tuple[tuple[str, int], ...] = ()
    # The verification protocol (PROTOCOL §11): this account's weight (None: no
    # policy), units per phase, and units holding a reported candidate.
    account_weight: int | None = None
    phases: tuple[tuple[str, int], ...] = ()
    candidate_units: tuple[int, ...] = ()
    # Where the network loop's time went (LoopTime.snapshot).
    loop: dict | None = None
    # How long a fresh claim settles now (DeliveryLag: longer while gossip is slow).
    claim_settle_s: float | None = None

    def to_json(self, state: str) -> dict:
        return {
            "state_digest": self.state_digest,
            "leaderboard": [list(e) for e in self.leaderboard],
            "peer_id": self.peer_id,
            "listen": list(self.listen),
            "peers": self.peers,
            "frontier": self.frontier,
            "units_verified": self.units_verified,
            "records": self.records,
            "rejected": self.rejected,
            "outbox": self.outbox,
            "pending": self.pending,
            "state": state,
            "fetch": None if self.fetch is None else dataclasses.asdict(self.fetch),
            "gets": dict(self.gets),
            "account_weight": self.account_weight,
            "phases": dict(self.phases),
            "candidate_units": list(self.candidate_units),
            "loop": self.loop,
            "claim_settle_s": self.claim_settle_s,
        }


def phase_counts(st: NetworkState) -> tuple[tuple[str, int], ...]:
    """Units per phase under the trust protocol, else per status (for the status file)."""
    counts: dict[str, int] = {}
    for u in st.units.values():
        key = u.phase or u.status
        if u.reopened:
            counts["reopened"] = counts.get("reopened", 0) + 1
        counts[key] = counts.get(key, 0) + 1
    return tuple(sorted(counts.items()))


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Something the node did or saw: kind is accepted, rejected, published, peers, warning."""

    kind: str
    detail: str = ""
    cid: str | None = None


def state_digest(st: NetworkState) -> str:
    """A short fingerprint of what the state shows: equal digests, equal views."""
    h = hashlib.sha256()
    h.update(f"{st.frontier}|{st.frontier_bound}|".encode())
    for unit in sorted(st.units):
        u = st.units[unit]
        h.update(f"{unit}:{u.status}:{(u.verified_root or b'').hex()}|".encode())
    for e in st.leaderboard:
        h.update(f"{e.rank}:{e.account.hex()}:{e.units_credited}:{e.numbers_verified}|".encode())
    h.update(",".join(sorted(st.confirmed_disputes)).encode())
    return h.hexdigest()[:16]
