"""Jobs: blocks, checkpoints, resume, cancellation; evidence and Merkle roots."""

from __future__ import annotations

import hashlib
import threading

import pytest

from engine import evidence
from engine.cpu import CpuBackend
from engine.evidence import BlockEvidence, UnitResult, merkle_proof, merkle_root, verify_proof
from engine.job import ReferenceBackend, Verifier, block_ranges, verify_range
from engine.params import Params

P = Params.custom(unit_bits=20, block_bits=14, sieve_k=12)


def unit(i: int = 0) -> tuple[int, int]:
    return P.unit_range(i)


def test_block_ranges_cover_exactly() -> None:
    lo, hi = 2**71 + 5, 2**71 + 3 * 2**14 + 7
    ranges = block_ranges(P, lo, hi)
    assert ranges[0][0] == lo and ranges[-1][1] == hi
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(r[0] % 2**14 == 0 for r in ranges[1:])
    with pytest.raises(ValueError):
        block_ranges(P, 10, 10)


def test_unit_has_all_blocks_and_reference_root() -> None:
    lo, hi = unit(2)
    fast = verify_range(P, lo, hi, "cpu", cores=2)
    exact = verify_range(P, lo, hi, "reference")
    assert len(fast.blocks) == P.blocks_per_unit
    assert fast.root == exact.root and len(fast.root) == 32
    assert fast.tested == exact.tested == CpuBackend(P).sieve.count_tested(lo, hi)


def test_checkpoint_resume_gives_identical_root(tmp_path) -> None:
    lo, hi = unit(1)
    whole = verify_range(P, lo, hi, "cpu")
    ckpt = tmp_path / "unit.ckpt"
    first = Verifier(P, lo, hi, CpuBackend(P), cores=1, checkpoint=ckpt)
    for _ in range(11):
        first.step()
    first.close()  # the process "dies" here
    second = Verifier(P, lo, hi, CpuBackend(P), cores=2, checkpoint=ckpt)
    assert second.blocks_done == 11
    assert len(second.restored()) == 11
    for _ in second.run():
        pass
    assert second.result().root == whole.root
    second.discard_checkpoint()
    assert not ckpt.exists()


def test_torn_checkpoint_line_is_ignored(tmp_path) -> None:
    lo, hi = unit(0)
    ckpt = tmp_path / "u.ckpt"
    job = Verifier(P, lo, hi, CpuBackend(P), checkpoint=ckpt)
    for _ in range(3):
        job.step()
    job.close()
    with open(ckpt, "a") as f:
        f.write('{"lo": "12')  # power lost mid-write
    again = Verifier(P, lo, hi, CpuBackend(P), checkpoint=ckpt)
    assert again.blocks_done == 3
    again.step()  # appends after terminating the torn line
    again.close()
    assert Verifier(P, lo, hi, CpuBackend(P), checkpoint=ckpt).blocks_done == 4


def test_foreign_checkpoint_is_set_aside(tmp_path) -> None:
    lo, hi = unit(0)
    ckpt = tmp_path / "u.ckpt"
    job = Verifier(P, lo, hi, CpuBackend(P), checkpoint=ckpt)
    job.step()
    job.close()
    other = Params.custom(unit_bits=20, block_bits=14, sieve_k=10)
    fresh = Verifier(other, lo, hi, CpuBackend(other), checkpoint=ckpt)
    assert fresh.blocks_done == 0
    assert (tmp_path / "u.ckpt.stale").exists()


def test_cancellation_stops_between_batches() -> None:
    lo, hi = unit(0)
    job = Verifier(P, lo, hi, CpuBackend(P), cores=1)
    cancel = threading.Event()
    seen = 0
    for _ in job.run(cancel):
        seen += 1
        if seen == 5:
            cancel.set()
    assert seen == 5 and job.blocks_done == 5 and not job.done
    with pytest.raises(RuntimeError):
        job.result()


def test_cores_change_between_steps() -> None:
    lo, hi = unit(0)
    job = Verifier(P, lo, hi, CpuBackend(P), cores=1)
    assert len(job.step()) == 1
    job.set_cores(3)
    assert len(job.step()) == 3


def test_leaf_encoding_golden() -> None:
    b = BlockEvidence(lo=27, hi=28, tested=1, odd_steps=37, max_value=9232, max_n=27, overflows=0)
    expected = (
        evidence.LEAF_DOMAIN
        + bytes.fromhex("00011b" "00011c" "000101" "000125" "00022410" "00011b" "0000" "0000")
    )
    assert b.canonical_bytes() == expected
    assert b.leaf() == hashlib.sha256(b"\x00" + expected).digest()


def test_merkle_proofs() -> None:
    for count in (1, 2, 3, 5, 8, 13):
        leaves = [hashlib.sha256(bytes([i])).digest() for i in range(count)]
        root = merkle_root(leaves)
        for i in range(count):
            proof = merkle_proof(leaves, i)
            assert verify_proof(leaves[i], i, count, proof, root)
            assert not verify_proof(leaves[(i + 1) % count], i, count, proof, root) or count == 1
    with pytest.raises(ValueError):
        merkle_root([])


def test_unit_result_rejects_gaps() -> None:
    a = BlockEvidence(lo=1, hi=5, tested=0, odd_steps=0, max_value=0, max_n=0, overflows=0)
    b = BlockEvidence(lo=6, hi=9, tested=0, odd_steps=0, max_value=0, max_n=0, overflows=0)
    with pytest.raises(ValueError):
        UnitResult(start=1, end=9, params_version=1, block_bits=2, sieve_k=2, backend="x", blocks=(a, b))


def test_reference_backend_matches_cpu_on_a_range() -> None:
    lo = 2**71 + 99
    ranges = block_ranges(P, lo, lo + 40_000)
    ref = ReferenceBackend(P).run_blocks(ranges, 1)
    fast = CpuBackend(P).run_blocks(ranges, 2)
    assert ref == fast
