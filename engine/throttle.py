"""Duty-cycle throttling: compute for a share of wall time, rest the remainder.

Users who want a cooler, quieter machine set a CPU (or GPU) share below 100%.
After each batch that took `busy` seconds, the caller rests
`busy * (1 - share) / share` seconds, so over time the engine is busy `share`
of the wall clock. The rest is returned, not slept, so a Qt worker can wait
with a timer and a headless node with an interruptible Event.
"""

from __future__ import annotations


class DutyCycle:
    """Computes rest periods for a target busy share in (0, 1]."""

    def __init__(self, share: float = 1.0) -> None:
        self.share = 1.0
        self.set_share(share)

    def set_share(self, share: float) -> None:
        if not 0.0 < share <= 1.0:
            raise ValueError("the busy share must be in (0, 1]")
        self.share = float(share)

    def rest_after(self, busy_seconds: float) -> float:
        """Seconds to rest after `busy_seconds` of work."""
        if self.share >= 1.0 or busy_seconds <= 0:
            return 0.0
        return busy_seconds * (1.0 - self.share) / self.share
