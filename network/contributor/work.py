"""Where a contributor session gets work and hands results: the `WorkSource` seam.

A session asks `next_work()` for the next thing to compute: an `Assignment` (a
unit), a block of someone else's record to recompute (`network.node.BlockTask`:
a dispute to confirm, a spot-check), or `Wait`. `NodeWork` is the source over a
running `network.node.Node`, the one order both front ends use; the app's solo
mode (app/network_bridge.py) is another source with the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine import Assignment, BlockEvidence, Params, UnitResult, checkpoint_unit
from network.wire import MAX_CLAIM_TTL

if TYPE_CHECKING:
    from network.node import BlockTask, Node

# When to ask again after a Wait.
STARTING_RETRY_MS = 500
SYNC_RETRY_MS = 200
IDLE_RETRY_MS = 1000
# A claim lasts claim_ttl_s; it is renewed every third of that (never more often
# than this), so one lost renewal never lets it lapse.
MIN_CLAIM_RENEW_S = 5.0


@dataclass(frozen=True, slots=True)
class Wait:
    """No work right now.

    Attributes:
        state: "starting" (the node is opening), "syncing" (catching up with
            peers) or "idle" (nothing open below the limit).
        reason: a short phrase for a status line.
        retry_ms: when to ask again.
    """

    state: str
    reason: str
    retry_ms: int


@runtime_checkable
class WorkSource(Protocol):
    """What a `ContributorSession` computes for, and where its results go.

    `submit` and `submit_block` store durably before they return; they raise
    `OSError` or `network.ledger.LedgerError` when they cannot (the session then
    keeps the result and tries again later). `submit_block` returns "" for a matching
    block of a spot-check whose record waits for the check's other blocks.
    """

    def next_work(self) -> Assignment | BlockTask | Wait: ...

    def submit(self, assignment: Assignment, result: UnitResult) -> str: ...

    def submit_block(self, task: BlockTask, evidence: BlockEvidence) -> str: ...

    def renew_claim(self, unit: int) -> None: ...

    @property
    def claim_renew_s(self) -> float: ...


def claim_renew_interval_s(claim_ttl_s: float) -> float:
    """How often a computing unit's claim is renewed (the same for every front end):
    a third of the TTL, which peers cut to MAX_CLAIM_TTL."""
    return max(MIN_CLAIM_RENEW_S, min(float(claim_ttl_s), MAX_CLAIM_TTL) / 3)


def has_checkpoint(folder: Path, params: Params) -> bool:
    """Whether `folder` holds a unit checkpoint of `params` (a unit to resume)."""
    if not folder.is_dir():
        return False
    return any(
        checkpoint_unit(p, params) is not None for p in folder.glob(f"{params.name}-unit*.ckpt")
    )


class NodeWork:
    """The work of a running `Node`, in the one order every front end uses.

    1. While the node catches up with its peers (`is_synced()`, at most the
       config's `sync_timeout_s`), `Wait("syncing")`, unless a checkpoint of ours
       is there to resume: a restart computes at once, a fresh node does not
       recompute what the network has already verified. Once a peer's head reported
       its frontier, a node still catching up may take a new unit at or above the
       highest frontier reported (`unit_floor()`, PROTOCOL §8, "Catching up"), but
       nothing else until it is synced;
    2. a dispute to confirm, or a spot-check when the budget allows;
    3. the next unit (`take_unit()`: our own checkpoint first, claimed; a new unit
       only after listening and once its claim settled, `Wait("syncing")` till then;
       none below the floor while the node catches up, past the sync cap too);
    4. with no unit open, a spot-check anyway (an idle node checks others);
    5. else `Wait("idle")`.
    """

    def __init__(self, node: Node) -> None:
        self.node = node

    def next_work(self) -> Assignment | BlockTask | Wait:
        node = self.node
        floor = node.unit_floor()  # None once synced, or before any peer's head
        catching_up = not node.is_synced() and not has_checkpoint(
            node.config.data_dir / "checkpoints", node.params
        )
        if catching_up and floor is None:
            return Wait("syncing", "catching up with the network…", SYNC_RETRY_MS)
        if not catching_up:
            task = node.next_block_task()
            if task is not None:
                return task
        assignment = node.take_unit() if floor is None else node.take_unit(floor=floor)
        if isinstance(assignment, Assignment):
            return assignment
        if assignment is not None:  # a Hold: listening, or our claim settling
            return Wait("syncing", assignment.reason, max(1, int(assignment.retry_s * 1000)))
        if not catching_up:
            task = node.next_block_task(idle=True)
            if task is not None:
                return task
        if floor is not None:  # nothing open at or above the floor: wait until synced
            return Wait(
                "syncing",
                f"catching up with the network (frontier ≥ {floor} reported)",
                SYNC_RETRY_MS,
            )
        return Wait("idle", "no unit needs computing right now", IDLE_RETRY_MS)

    def submit(self, assignment: Assignment, result: UnitResult) -> str:
        return str(self.node.submit_unit(assignment, result))

    def submit_block(self, task: BlockTask, evidence: BlockEvidence) -> str:
        return str(self.node.submit_block(task, evidence))

    def renew_claim(self, unit: int) -> None:
        self.node.claim(unit)

    @property
    def claim_renew_s(self) -> float:
        return claim_renew_interval_s(self.node.config.claim_ttl_s)
