"""A full disk while checkpointing: the write fails loudly, close() does not
fail again, and the next write after the disk has room loses nothing."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from engine import DEV
from engine.checkpoint import Checkpoint
from engine.reference import run_block
from engine.sieve import load

BLOCK = 1 << DEV.block_bits
LO, _ = DEV.unit_range(0)


def _blocks(n: int):
    sieve = load(DEV.sieve_k)
    return [
        run_block(sieve, LO + i * BLOCK, LO + (i + 1) * BLOCK, DEV.exact_step_bound)
        for i in range(n)
    ]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_a_real_enospc_is_raised_by_the_write_and_not_again_by_close() -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does (regression:
    close() flushed the failed lines again and raised, crashing the node's stop)."""
    ck = Checkpoint(Path("/dev/full"), DEV, LO, LO + 2 * BLOCK)
    with pytest.raises(OSError) as failed:
        ck.append_many(_blocks(2))
    assert failed.value.errno == errno.ENOSPC
    ck.close()  # must not raise
    ck.close()  # and closing twice is harmless


def test_after_a_failed_write_the_next_one_keeps_every_block(tmp_path, monkeypatch) -> None:
    a, b = _blocks(2)
    path = tmp_path / "unit.ckpt"
    ck = Checkpoint(path, DEV, LO, LO + 2 * BLOCK)
    ck.append(a)
    real_fsync = os.fsync
    calls = {"n": 0}

    def fsync_full_once(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_full_once)
    with pytest.raises(OSError):
        ck.append(b)  # the disk is full: the caller keeps b and writes it again
    ck.append(b)  # room again
    ck.close()
    again = Checkpoint(path, DEV, LO, LO + 2 * BLOCK).load()
    assert again == {a.lo: a, b.lo: b}
