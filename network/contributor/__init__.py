"""The contributor: what a computer that helps does, for both front ends.

- `session.py`: `ContributorSession`, the compute loop's body (claim → compute →
  checkpoint → publish → renew → spot-check), one batch per `turn()`;
- `events.py`: the frozen values a turn yields;
- `work.py`: `WorkSource` (where work comes from), `NodeWork` (a running node's
  work, in the one order) and `Wait`.

`network/runner.py` (headless) and `app/workers.py` (the desktop app) are thin
loops over a session.
"""

from network.contributor.events import (
    BatchDone,
    BatchStarted,
    BlockTaskDone,
    BlockTaskStarted,
    Event,
    Failed,
    GpuFailed,
    NextTurn,
    NoGpu,
    Progress,
    StateChanged,
    StoreFailed,
    UnitDone,
    UnitStarted,
    block_task_label,
)
from network.contributor.session import STORE_RETRY_S, ContributorSession
from network.contributor.work import (
    NodeWork,
    Wait,
    WorkSource,
    claim_renew_interval_s,
)

__all__ = [
    "STORE_RETRY_S",
    "BatchDone",
    "BatchStarted",
    "BlockTaskDone",
    "BlockTaskStarted",
    "ContributorSession",
    "Event",
    "Failed",
    "GpuFailed",
    "NextTurn",
    "NoGpu",
    "NodeWork",
    "Progress",
    "StateChanged",
    "StoreFailed",
    "UnitDone",
    "UnitStarted",
    "Wait",
    "WorkSource",
    "block_task_label",
    "claim_renew_interval_s",
]
