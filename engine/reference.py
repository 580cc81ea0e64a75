"""The exact reference: plain Python integers, no shortcuts but the sieve.

This is the oracle every fast backend is tested against, and the exact path
that the fast backends hand numbers to when 128 bits or the fast step bound do
not suffice. It is deliberately simple: read it next to docs/PROTOCOL.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.evidence import BlockEvidence
from engine.sieve import Sieve

U128_LIMIT = 1 << 128  # values at or above this overflow the fast path


@dataclass(frozen=True, slots=True)
class Glide:
    """What iterating one tested n showed.

    Attributes:
        fell: True if the trajectory fell below n within the step bound.
        odd_steps: 3x+1 steps taken until the trajectory was first below n.
        max_value: largest 3x+1 value met on the way (the standard map's peak).
        overflowed: True if some value reached 2**128 or more.
    """

    fell: bool
    odd_steps: int
    max_value: int
    overflowed: bool


def glide(n: int, step_bound: int) -> Glide:
    """Iterate odd n >= 3 until its trajectory first falls below n.

    Gives up (fell=False) after `step_bound` odd steps without falling.
    """
    if n < 3 or n % 2 == 0:
        raise ValueError("glide() takes an odd n >= 3")
    x = n
    steps = 0
    peak = 0
    overflowed = False
    while True:
        if steps >= step_bound:
            return Glide(False, steps, peak, overflowed)
        x = 3 * x + 1
        steps += 1
        if x > peak:
            peak = x
            if x >= U128_LIMIT:
                overflowed = True
        x >>= (x & -x).bit_length() - 1
        if x < n:
            return Glide(True, steps, peak, overflowed)


def run_block(sieve: Sieve, lo: int, hi: int, exact_step_bound: int) -> BlockEvidence:
    """Evidence for the integers [lo, hi), computed exactly."""
    acc = EvidenceAccumulator()
    for n in sieve.tested_numbers(lo, hi):
        acc.add(n, glide(n, exact_step_bound))
    return acc.finish(lo, hi)


class EvidenceAccumulator:
    """Folds per-number glides into one block's evidence.

    Numbers must be added in increasing order: among equal peaks the first
    (smallest) n keeps the record, which is the protocol's tie rule.
    """

    __slots__ = ("tested", "odd_steps", "max_value", "max_n", "overflows", "candidates")

    def __init__(self) -> None:
        self.tested = 0
        self.odd_steps = 0
        self.max_value = 0
        self.max_n = 0
        self.overflows = 0
        self.candidates: list[int] = []

    def add(self, n: int, g: Glide) -> None:
        self.tested += 1
        if not g.fell:
            # A candidate counterexample: reported, never counted as passed.
            self.candidates.append(n)
            return
        self.odd_steps += g.odd_steps
        if g.overflowed:
            self.overflows += 1
        self.offer_max(g.max_value, n)

    def offer_max(self, value: int, n: int) -> None:
        if value > self.max_value or (value == self.max_value and value and n < self.max_n):
            self.max_value = value
            self.max_n = n

    def finish(self, lo: int, hi: int) -> BlockEvidence:
        return BlockEvidence(
            lo=lo,
            hi=hi,
            tested=self.tested,
            odd_steps=self.odd_steps,
            max_value=self.max_value,
            max_n=self.max_n,
            overflows=self.overflows,
            candidates=tuple(sorted(self.candidates)),
        )
