"""Evidence: per-block leaves, the Merkle root, and the result of a whole range.

Byte formats here are normative (docs/PROTOCOL.md, "Evidence"): every backend
must produce bit-identical leaves and roots for the same range.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

LEAF_DOMAIN = b"hailstone/leaf/v1\x00"
_LEAF_PREFIX = b"\x00"  # RFC 6962 style: leaves and inner nodes never collide
_NODE_PREFIX = b"\x01"


def encode_uint(value: int) -> bytes:
    """Canonical unsigned integer: 2-byte big-endian length, then minimal big-endian bytes."""
    if value < 0:
        raise ValueError("encode_uint takes a non-negative integer")
    body = value.to_bytes((value.bit_length() + 7) // 8, "big")
    if len(body) > 0xFFFF:
        raise ValueError("integer too large to encode")
    return len(body).to_bytes(2, "big") + body


@dataclass(frozen=True, slots=True)
class BlockEvidence:
    """What one block of the range showed.

    Attributes:
        lo, hi: the integers [lo, hi) this block covers.
        tested: how many of them were iterated (the sieve predicts this).
        odd_steps: total 3x+1 steps of the iterated numbers until each fell below itself.
        max_value: largest 3x+1 value reached (0 if nothing was iterated).
        max_n: the smallest n that reached max_value (0 if none).
        overflows: iterated numbers whose trajectory reached 2**128 or more.
        candidates: numbers that did not fall below themselves within the exact bound.
    """

    lo: int
    hi: int
    tested: int
    odd_steps: int
    max_value: int
    max_n: int
    overflows: int
    candidates: tuple[int, ...] = ()

    def canonical_bytes(self) -> bytes:
        parts = [
            LEAF_DOMAIN,
            encode_uint(self.lo),
            encode_uint(self.hi),
            encode_uint(self.tested),
            encode_uint(self.odd_steps),
            encode_uint(self.max_value),
            encode_uint(self.max_n),
            encode_uint(self.overflows),
            encode_uint(len(self.candidates)),
        ]
        parts.extend(encode_uint(c) for c in self.candidates)
        return b"".join(parts)

    def leaf(self) -> bytes:
        """The 32-byte Merkle leaf of this block."""
        return hashlib.sha256(_LEAF_PREFIX + self.canonical_bytes()).digest()

    def to_json(self) -> dict:
        return {
            "lo": str(self.lo),
            "hi": str(self.hi),
            "tested": self.tested,
            "odd_steps": self.odd_steps,
            "max_value": str(self.max_value),
            "max_n": str(self.max_n),
            "overflows": self.overflows,
            "candidates": [str(c) for c in self.candidates],
        }

    def to_json_line(self) -> str:
        """json.dumps(self.to_json(), separators=(",", ":")), written out.

        Checkpoints write one line per block, thousands per GPU batch; this is
        four times faster than building the dict and dumping it (tested equal).
        """
        candidates = ",".join(f'"{c}"' for c in self.candidates)
        return (
            f'{{"lo":"{self.lo}","hi":"{self.hi}","tested":{self.tested},'
            f'"odd_steps":{self.odd_steps},"max_value":"{self.max_value}",'
            f'"max_n":"{self.max_n}","overflows":{self.overflows},"candidates":[{candidates}]}}'
        )

    @staticmethod
    def from_json(obj: dict) -> BlockEvidence:
        return BlockEvidence(
            lo=int(obj["lo"]),
            hi=int(obj["hi"]),
            tested=int(obj["tested"]),
            odd_steps=int(obj["odd_steps"]),
            max_value=int(obj["max_value"]),
            max_n=int(obj["max_n"]),
            overflows=int(obj["overflows"]),
            candidates=tuple(int(c) for c in obj["candidates"]),
        )


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash over already-hashed leaves.

    The split point is the largest power of two below the count, so a unit's
    4096 leaves form a perfect tree and any other count is still defined.
    """
    if not leaves:
        raise ValueError("a Merkle root needs at least one leaf")
    level = list(leaves)
    if len(level) & (len(level) - 1) == 0:  # power of two: iterative, fast
        while len(level) > 1:
            level = [_node(level[i], level[i + 1]) for i in range(0, len(level), 2)]
        return level[0]
    split = 1 << ((len(level) - 1).bit_length() - 1)
    return _node(merkle_root(level[:split]), merkle_root(level[split:]))


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path for leaf `index` (RFC 6962 §2.1.1), bottom-up."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return merkle_proof(leaves[:split], index) + [merkle_root(leaves[split:])]
    return merkle_proof(leaves[split:], index - split) + [merkle_root(leaves[:split])]


def verify_proof(leaf: bytes, index: int, count: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if `proof` shows leaf number `index` of `count` leaves under `root`."""
    if not 0 <= index < count:
        return False

    def walk(idx: int, n: int, path: list[bytes]) -> bytes | None:
        if n == 1:
            return leaf if not path else None
        if not path:
            return None
        split = 1 << ((n - 1).bit_length() - 1)
        sibling = path[-1]
        if idx < split:
            sub = walk(idx, split, path[:-1])
            return None if sub is None else _node(sub, sibling)
        sub = walk(idx - split, n - split, path[:-1])
        return None if sub is None else _node(sibling, sub)

    return walk(index, count, list(proof)) == root


@dataclass(frozen=True, slots=True)
class UnitResult:
    """The outcome of verifying [start, end): totals, leaves and root.

    For a protocol work unit, start/end are the unit's bounds; the CLI also
    builds one for any range. `blocks` are in increasing order and cover the
    range exactly.
    """

    start: int
    end: int
    params_version: int
    block_bits: int
    sieve_k: int
    backend: str
    blocks: tuple[BlockEvidence, ...]
    seconds: float = 0.0
    leaves: tuple[bytes, ...] = field(default=(), repr=False)
    root: bytes = b""

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("a result needs at least one block")
        if self.blocks[0].lo != self.start or self.blocks[-1].hi != self.end:
            raise ValueError("blocks do not cover the range")
        for a, b in zip(self.blocks, self.blocks[1:], strict=False):
            if a.hi != b.lo:
                raise ValueError("blocks are not contiguous")
        leaves = tuple(b.leaf() for b in self.blocks)
        object.__setattr__(self, "leaves", leaves)
        object.__setattr__(self, "root", merkle_root(leaves))

    @property
    def tested(self) -> int:
        return sum(b.tested for b in self.blocks)

    @property
    def odd_steps(self) -> int:
        return sum(b.odd_steps for b in self.blocks)

    @property
    def overflows(self) -> int:
        return sum(b.overflows for b in self.blocks)

    @property
    def candidates(self) -> tuple[int, ...]:
        return tuple(c for b in self.blocks for c in b.candidates)

    @property
    def max_value(self) -> int:
        return self._peak()[0]

    @property
    def max_n(self) -> int:
        return self._peak()[1]

    def _peak(self) -> tuple[int, int]:
        best = (0, 0)
        for b in self.blocks:  # increasing n: strict > keeps the smallest n on ties
            if b.max_value > best[0]:
                best = (b.max_value, b.max_n)
        return best

    @property
    def numbers_per_second(self) -> float:
        return (self.end - self.start) / self.seconds if self.seconds > 0 else 0.0

    def canonical_bytes(self) -> bytes:
        """Summary bytes (not the leaves): what a work record commits to."""
        return b"".join(
            [
                b"hailstone/unit/v1\x00",
                encode_uint(self.params_version),
                encode_uint(self.start),
                encode_uint(self.end),
                encode_uint(self.block_bits),
                encode_uint(self.sieve_k),
                encode_uint(self.tested),
                encode_uint(self.odd_steps),
                encode_uint(self.max_value),
                encode_uint(self.max_n),
                encode_uint(self.overflows),
                encode_uint(len(self.candidates)),
                *(encode_uint(c) for c in self.candidates),
                self.root,
            ]
        )

    def to_json(self) -> dict:
        return {
            "start": self.start,
            "end": self.end,
            "backend": self.backend,
            "tested": self.tested,
            "odd_steps": self.odd_steps,
            "max_value": str(self.max_value),
            "max_n": str(self.max_n),
            "overflows": self.overflows,
            "candidates": [str(c) for c in self.candidates],
            "root": self.root.hex(),
            "seconds": self.seconds,
            "numbers_per_second": self.numbers_per_second,
        }
