"""What a contributor session reports: plain frozen values, one class per kind.

`ContributorSession.turn()` yields these; the headless runner turns them into log
lines, counters and the status file, the app's engine worker into Qt signals
(STYLE §1: the core reports progress as values, only app/ makes signals).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import Assignment


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The session's state changed.

    state: "computing", "paused" (by the user), "waiting" (a policy reason, say on
    battery), "preparing" (building the sieve on the first start), "syncing" (the
    node starts or catches up), "idle" (nothing open),
    "error" (a failure; see the event before it) or "stopped".
    reason: a short phrase for a status line ("cpu", "paused by you", ...).
    """

    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class UnitStarted:
    """A unit began or resumed (again after a backend change); `resumed_blocks` of its
    `blocks_total` came from its checkpoint."""

    assignment: Assignment
    resumed_blocks: int
    blocks_total: int


@dataclass(frozen=True, slots=True)
class BatchStarted:
    """A batch (of a unit, or one block of someone else's work) is about to run."""

    backend: str


@dataclass(frozen=True, slots=True)
class BatchDone:
    """A batch ran: `numbers` integers (every one counted) in `busy_s` of compute;
    `rest_s` is the duty-cycle rest that follows it. `checkpointed`: the unit's
    checkpoint was written with it (False for a block task)."""

    backend: str
    numbers: int
    busy_s: float
    rest_s: float
    checkpointed: bool


@dataclass(frozen=True, slots=True)
class Progress:
    """Where the current unit stands (after each batch, and once for restored blocks).

    backend: the backend that ran the batch ("checkpoint" for restored blocks);
    batch_s: that batch's compute time with its rest (0 when restored);
    eta_s: the rest of the unit at this run's pace (None before a batch ran).
    """

    unit: int
    blocks_done: int
    blocks_total: int
    eta_s: float | None
    backend: str
    batch_s: float = 0.0


@dataclass(frozen=True, slots=True)
class UnitDone:
    """A unit finished and was stored (and published in network mode; cid "" solo)."""

    unit: int
    root_hex: str
    cid: str
    seconds: float
    backend: str
    numbers: int
    candidates: int


def block_task_label(purpose: str) -> str:
    """What a block task (`BlockTask.purpose`) is, in words: "spot-check", "audit" or
    "confirming a dispute" (the front ends capitalise it where a line begins)."""
    return {"confirm": "confirming a dispute", "audit": "audit"}.get(purpose, "spot-check")


@dataclass(frozen=True, slots=True)
class BlockTaskStarted:
    """A block of someone else's record (a network.node.BlockTask) is recomputed."""

    task: object


@dataclass(frozen=True, slots=True)
class BlockTaskDone:
    """One block of someone else's work recomputed and reported.

    purpose: "spot-check", "audit" or "confirm"; agrees: our leaf matched the claimed
    one (for a confirmation: the dispute was confirmed when False); cid: our record
    ("" while a spot-check's record waits for its other blocks).
    """

    purpose: str
    work_cid: str
    block: int
    agrees: bool
    cid: str
    seconds: float
    backend: str


@dataclass(frozen=True, slots=True)
class NoGpu:
    """The GPU asked for cannot compute here (`reason` says why); the CPU does."""

    reason: str


@dataclass(frozen=True, slots=True)
class GpuFailed:
    """The GPU failed mid-run (a driver reset, say); the CPU takes over, the unit's
    checkpoint keeps every finished batch."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class StoreFailed:
    """A result or a checkpoint could not be written (a full disk, say). Nothing is
    lost: the session keeps it and tries again after `retry_s`."""

    what: str
    error: BaseException
    retry_s: float


@dataclass(frozen=True, slots=True)
class Failed:
    """The engine failed in a way the session cannot work around; it stays in
    "error" until `resume()`. The unit's checkpoint keeps what was done."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class NextTurn:
    """Always the last event of a turn: call `turn()` again after `delay_s`, or,
    when None, only after a command (paused, waiting, failed, stopped)."""

    delay_s: float | None


Event = (
    StateChanged
    | UnitStarted
    | BatchStarted
    | BatchDone
    | Progress
    | UnitDone
    | BlockTaskStarted
    | BlockTaskDone
    | NoGpu
    | GpuFailed
    | StoreFailed
    | Failed
    | NextTurn
)
