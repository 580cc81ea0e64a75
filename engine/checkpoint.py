"""Checkpoints: completed blocks of a range, on disk, so a run can resume.

Format (JSON lines): a header line naming the format, the range and the
parameters, then one line per completed block. The lines of a batch are
appended, flushed and fsynced as soon as the batch is done, so a crash or
power loss costs at most the batch in flight. A torn last line is ignored; a header
that does not match the run makes the whole file ignored (it is renamed
aside, never deleted, in case it is someone's only copy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.evidence import BlockEvidence
from engine.params import Params

FORMAT = "hailstone-checkpoint/1"


def _header(params: Params, start: int, end: int) -> dict:
    return {
        "format": FORMAT,
        "start": str(start),
        "end": str(end),
        "params": {
            "version": params.version,
            "block_bits": params.block_bits,
            "sieve_k": params.sieve_k,
            "step_bound": params.step_bound,
            "exact_step_bound": params.exact_step_bound,
        },
    }


def checkpoint_blocks_done(path: Path) -> int:
    """The blocks a unit's checkpoint holds: distinct blocks on its whole lines (not the
    header, not a torn last line); 0 without a file. A claim shows this as its
    progress (`done`), so it never claims a block that a crash would lose."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    starts: set[str] = set()
    # [1:-1]: after the header, before what follows the last newline (torn or empty)
    for line in data.split(b"\n")[1:-1]:
        try:
            lo = json.loads(line)["lo"]
        except (ValueError, KeyError, TypeError):
            continue  # a torn line ended by the next write
        starts.add(str(lo))
    return len(starts)


class Checkpoint:
    """Append-only store of finished blocks for one (params, range)."""

    def __init__(self, path: Path, params: Params, start: int, end: int) -> None:
        self.path = Path(path)
        self._header = _header(params, start, end)
        self._file = None

    def load(self) -> dict[int, BlockEvidence]:
        """Blocks already done, by their lo. Empty if the file is absent or foreign."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError):
            self._set_aside()
            return {}
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if header != self._header:
            self._set_aside()
            return {}
        done: dict[int, BlockEvidence] = {}
        for line in lines[1:]:
            try:
                block = BlockEvidence.from_json(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a torn write from a crash: the other lines stand alone
            done[block.lo] = block
        return done

    def _set_aside(self) -> None:
        try:
            os.replace(self.path, self.path.with_suffix(self.path.suffix + ".stale"))
        except OSError:
            pass

    def append(self, block: BlockEvidence) -> None:
        """Record one finished block durably."""
        self.append_many([block])

    def append_many(self, blocks: list[BlockEvidence]) -> None:
        """Record a batch of finished blocks durably with one write and one fsync.

        A GPU batch holds hundreds of blocks: an fsync each would cost more
        than computing them. A crash mid-write leaves whole lines plus at
        most one torn line, which load() skips.
        """
        if not blocks:
            return
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fresh = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open
            if fresh:
                self._file.write(json.dumps(self._header) + "\n")
            else:
                self._terminate_torn_line()
        try:
            self._file.write("".join(b.to_json_line() + "\n" for b in blocks))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            # A full disk: the handle's buffer still holds lines the caller will
            # write again, so flushing it later (at close) would fail the same way.
            # Drop it; the next append reopens the file and ends any torn line.
            self._drop_handle()
            raise

    def _terminate_torn_line(self) -> None:
        # A torn line from a crash would swallow the next record: end it first.
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            last = f.read(1)
        if last != b"\n":
            self._file.write("\n")

    def close(self) -> None:
        self._drop_handle()

    def _drop_handle(self) -> None:
        """Close the file; lines a failed write left in its buffer are not durable
        (the caller was told by that write's error), so a failing flush is dropped."""
        file, self._file = self._file, None
        if file is None:
            return
        try:
            file.close()
        except OSError:
            pass  # the file is closed all the same (io closes after a failed flush)

    def remove(self) -> None:
        """Delete the checkpoint once its result is safely stored elsewhere."""
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
