"""What every part of the node shares: who we are, the ledger and IPFS, the clock,
and where events and rejections go.

`Node` builds one `Services` before `start()` and hands it to each part, so no part
holds the whole node. The ledger and IPFS are opened by `Node.start()` (IPFS may be
given to the constructor); `ledger` and `ipfs` assert they are open. Thread-safe:
after `start()` nothing here changes, and the event sink does its own locking.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from engine import Params
from network import codec, wire
from network.ipfs import IpfsNode
from network.ledger import Ledger, LedgerError
from network.records import Record, SignedRecord
from network.rejection import Rejection

log = logging.getLogger("hailstone.node")

EventSink = Callable[[str, str, "str | None"], None]


@dataclass(eq=False)
class Services:
    """The node's identity, its open ledger and IPFS node, its clock and event sink.

    Attributes:
        params: the parameter set this node computes and counts.
        node_key: this machine's signing key (records are signed with it).
        account_pub: the account this node's work is credited to.
        clock: unix seconds (tests pass their own).
        on_event: (kind, detail, cid) -> None; Node's event log.
        opened_ledger, opened_ipfs: set by Node.start() (IPFS possibly earlier).
    """

    params: Params
    node_key: SigningKey
    account_pub: bytes
    clock: Callable[[], float]
    on_event: EventSink
    opened_ledger: Ledger | None = None
    opened_ipfs: IpfsNode | None = None
    node_pub: bytes = field(init=False)

    def __post_init__(self) -> None:
        self.node_pub = bytes(self.node_key.verify_key)

    @property
    def ledger(self) -> Ledger:
        assert self.opened_ledger is not None, "start() the node first"
        return self.opened_ledger

    @property
    def ipfs(self) -> IpfsNode:
        assert self.opened_ipfs is not None, "start() the node first"
        return self.opened_ipfs

    def now(self) -> int:
        """The clock in whole seconds, as records carry it."""
        return int(self.clock())

    def sign(self, record: Record) -> SignedRecord:
        """`record` signed with this node's key (records a node makes: work, check, ...)."""
        return codec.sign(record, self.node_key)

    def topic(self, name: str) -> str:
        """The gossip topic `name` (records, claims, heads) of our network."""
        return wire.topics(self.params.name)[name]

    def event(self, kind: str, detail: str = "", cid: str | None = None) -> None:
        self.on_event(kind, detail, cid)

    def reject(self, rejection: Rejection, source: str, count: int = 1) -> None:
        """Count `count` rejections by reason in the ledger, and tell the event log."""
        try:
            self.ledger.count_rejection(
                rejection.reason_code, rejection.message, source, count=count
            )
        except LedgerError as exc:
            log.warning("cannot count a rejection: %s", exc)
        self.event("rejected", f"{rejection} (from {source})")
