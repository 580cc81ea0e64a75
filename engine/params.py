"""Protocol constants of the verification engine, in one versioned place.

Every number that changes what "verified" means, or how a result is encoded,
lives here. Production nodes must agree on all of them; tests and the dev
network build smaller parameter sets with `Params.custom`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

PROTOCOL_VERSION = 2

# Residues n mod 9 that the mod-9 rule leaves to be iterated. The others are
# reached from a smaller number: n = 2 (mod 3) from (2n - 1)/3, and
# n = 4 (mod 9) from (8n - 5)/9 (see docs/PROTOCOL.md, "The tested set").
MOD9_KEPT = (0, 1, 3, 6, 7)


@dataclass(frozen=True, slots=True)
class Params:
    """One complete, versioned parameter set.

    Attributes:
        name: "production", "dev" or a test label; informational only.
        version: protocol version these constants belong to.
        start: first integer of unit 0.
        unit_bits: a work unit covers 2**unit_bits consecutive integers.
        block_bits: an evidence block covers 2**block_bits integers.
        sieve_k: the residue sieve works modulo 2**sieve_k.
        step_bound: odd steps a number may take on the fast path before it is
            handed to the exact path.
        exact_step_bound: odd steps the exact path allows before a number is
            reported as a candidate counterexample.
    """

    name: str
    version: int
    start: int
    unit_bits: int
    block_bits: int
    sieve_k: int
    step_bound: int
    exact_step_bound: int

    def __post_init__(self) -> None:
        if self.start < 1:
            raise ValueError("start must be >= 1")
        if not 2 <= self.sieve_k <= 32:
            raise ValueError("sieve_k must be in 2..32")
        if not 4 <= self.block_bits <= self.unit_bits <= 48:
            raise ValueError("need 4 <= block_bits <= unit_bits <= 48")
        if self.start % (1 << self.block_bits):
            raise ValueError("start must be a multiple of the block size")
        if not 1 <= self.step_bound <= self.exact_step_bound:
            raise ValueError("need 1 <= step_bound <= exact_step_bound")

    @property
    def unit_size(self) -> int:
        return 1 << self.unit_bits

    @property
    def block_size(self) -> int:
        return 1 << self.block_bits

    @property
    def blocks_per_unit(self) -> int:
        return 1 << (self.unit_bits - self.block_bits)

    def unit_range(self, unit: int) -> tuple[int, int]:
        """[lo, hi) of work unit `unit` (unit 0 starts at `start`)."""
        if unit < 0:
            raise ValueError("unit index must be >= 0")
        lo = self.start + unit * self.unit_size
        return lo, lo + self.unit_size

    def unit_of(self, n: int) -> int:
        """Index of the unit that contains n (n >= start)."""
        if n < self.start:
            raise ValueError("n is below the parameter set's start")
        return (n - self.start) >> self.unit_bits

    def with_name(self, name: str) -> Params:
        return replace(self, name=name)

    @staticmethod
    def custom(
        *,
        name: str = "test",
        start: int = 1 << 71,
        unit_bits: int = 20,
        block_bits: int = 16,
        sieve_k: int = 16,
        step_bound: int = 4096,
        exact_step_bound: int = 1 << 20,
    ) -> Params:
        return Params(
            name=name,
            version=PROTOCOL_VERSION,
            start=start,
            unit_bits=unit_bits,
            block_bits=block_bits,
            sieve_k=sieve_k,
            step_bound=step_bound,
            exact_step_bound=exact_step_bound,
        )


# A unit is 2^40 integers: minutes on a CPU (2 cores at 5.4e9 numbers/s: 3.4 min),
# seconds on a GPU (2.2 s at 5e11/s), so claims, records and evidence stay few
# (2^36 made a 2-core machine publish about 6,500 records a day and a GPU several a
# second). Blocks of 2^28: 4096 per unit (128 KiB of leaves), 0.05 s on one core, so
# pausing stays prompt. The sieve works modulo 2^31 (0.614 % of residues kept, 198 MiB
# of tables): 10 % more numbers per second than 2^30 and 23 % more than 2^28 for
# 0.05-0.1 s more start-up; 2^32 is 5 % faster again but costs 0.25 s more per start
# and 359 MiB (PROTOCOL §3).
PRODUCTION = Params(
    name="production",
    version=PROTOCOL_VERSION,
    start=1 << 71,
    unit_bits=40,
    block_bits=28,
    sieve_k=31,
    step_bound=4096,
    exact_step_bound=1 << 22,
)

# Small units for a laptop-sized local network: a unit takes seconds.
DEV = Params(
    name="dev",
    version=PROTOCOL_VERSION,
    start=1 << 71,
    unit_bits=28,
    block_bits=20,
    sieve_k=20,
    step_bound=4096,
    exact_step_bound=1 << 22,
)

BY_NAME = {"production": PRODUCTION, "dev": DEV}


def by_name(name: str) -> Params:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown parameter set {name!r} (choose {', '.join(BY_NAME)})") from None
