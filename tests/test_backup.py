"""Backup while a real node computes, restore into a fresh folder, the node resumes."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
import subprocess
import sys
import tarfile
from collections import Counter

import pytest

from engine import DEV, verify_range
from network import codec
from network.backup import MANIFEST, BackupError, create_backup, restore_backup
from network.identity import Profile
from network.ledger import Ledger
from tests.netutil import ROOT, NodeProcess, make_profile, wait_until

pytestmark = pytest.mark.network


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args],
                          capture_output=True, text=True, timeout=300)


def my_work_units(data_dir) -> list[int]:
    """Units of this profile's account that its ledger holds work records for (one
    entry per record; read-only, so it can watch a running node's ledger)."""
    account = Profile(data_dir).account_public_key()
    conn = sqlite3.connect(f"file:{data_dir / 'ledger.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT unit FROM records WHERE kind = 'work' AND account = ?", (account,)
        ).fetchall()
    finally:
        conn.close()
    return sorted(r[0] for r in rows)


def checkpoint_units(data_dir) -> dict[int, int]:
    """unit -> blocks recorded in its checkpoint (header line excluded)."""
    out = {}
    for path in (data_dir / "checkpoints").glob("dev-unit*.ckpt"):
        # "dev-unit-7.ckpt" (older nodes: "dev-unit7.ckpt")
        unit = int(re.fullmatch(r"dev-unit-?(\d+)\.ckpt", path.name).group(1))
        out[unit] = len(path.read_bytes().splitlines()) - 1
    return out


def test_backup_while_computing_restore_and_resume(tmp_path) -> None:
    node = NodeProcess(tmp_path, "orig").start()
    try:
        wait_until(lambda: node.status().get("units_done", 0) >= 2, 120, "two finished units")
        wait_until(lambda: node.status().get("blocks_done", 0) > 0, 60, "a unit in progress")
        out = cli("backup", "--data-dir", str(node.data_dir), "--out", str(tmp_path / "b.tgz"))
        assert out.returncode == 0, out.stderr
        assert "backed up" in out.stdout
        assert node.proc.poll() is None  # the node never noticed
    finally:
        assert node.stop() == 0
    assert (tmp_path / "b.tgz").stat().st_mode & 0o077 == 0

    with tarfile.open(tmp_path / "b.tgz") as tar:
        names = tar.getnames()
    assert names[-1] == MANIFEST  # written last, with every file's checksum
    assert {"account.key", "node.key", "node.secret", "profile.json", "ledger.sqlite3"} <= set(names)
    assert not any(n.startswith(("ipfs/", "logs/")) or n.endswith(("-wal", "-shm")) for n in names)

    fresh = tmp_path / "restored"
    out = cli("restore", str(tmp_path / "b.tgz"), "--data-dir", str(fresh))
    assert out.returncode == 0, out.stderr
    assert (fresh / "account.key").stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(fresh / "ledger.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    backed_up = my_work_units(fresh)
    assert len(backed_up) >= 2 and backed_up == sorted(set(backed_up))
    # Usually one checkpoint, of the unit in progress (none if the backup fell
    # exactly between two units).
    in_progress = checkpoint_units(fresh)
    assert len(in_progress) <= 1 and all(n <= DEV.blocks_per_unit for n in in_progress.values())
    # Checkpoints are read before the ledger: a checkpoint is for a unit the
    # snapshot lacks (it resumes), or, if the unit finished in between, for one
    # the snapshot holds (the node skips a unit its account reported).
    resumed = min((u for u in in_progress if u not in backed_up), default=max(backed_up) + 1)

    # The restored profile runs as the same account and node key, and resumes.
    again = NodeProcess(tmp_path, "restored", extra=["--unit-limit", str(resumed + 2)])
    again.start()
    try:
        wait_until(lambda: set(my_work_units(fresh)) >= set(range(resumed + 2)), 120,
                   "the resumed unit and the next one")
    finally:
        assert again.stop() == 0
    units = my_work_units(fresh)
    counts = Counter(units)
    assert all(n == 1 for n in counts.values()), f"a unit reported twice: {counts}"
    assert set(backed_up) <= set(units)  # nothing the backup held is lost
    assert set(units) == set(range(resumed + 2))  # no gap: every unit once
    # The resumed unit's result is exactly the unit's root.
    account = Profile(fresh).account_public_key()
    with Ledger.in_dir(fresh) as ledger:
        (row,) = [r for r in ledger.records(kind="work", unit=resumed) if r.account == account]
    assert codec.parse(row.data).record.root == verify_range(DEV, *DEV.unit_range(resumed), "cpu").root


def test_restore_refuses_bad_input_and_changes_nothing(tmp_path) -> None:
    make_profile(tmp_path / "p", "alice")
    summary = create_backup(tmp_path / "p", tmp_path / "b.tgz")
    assert summary.files >= 5

    # an existing profile is never overwritten
    with pytest.raises(BackupError) as e:
        restore_backup(tmp_path / "b.tgz", tmp_path / "p")
    assert e.value.code == "exists"

    # a truncated file
    data = (tmp_path / "b.tgz").read_bytes()
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) // 2])
    with pytest.raises(BackupError) as e:
        restore_backup(tmp_path / "cut.tgz", tmp_path / "t1")
    assert e.value.code == "damaged" and not (tmp_path / "t1").exists()

    # a file whose content does not match the manifest
    (tmp_path / "evil.tgz").write_bytes(_rewrite(data, "profile.json", b"{}"))
    with pytest.raises(BackupError) as e:
        restore_backup(tmp_path / "evil.tgz", tmp_path / "t2")
    assert e.value.code == "damaged" and "checksum" in str(e.value)
    assert not (tmp_path / "t2").exists()

    # a path that climbs out of the profile
    (tmp_path / "climb.tgz").write_bytes(_rewrite(data, "../escape", b"x", add=True))
    with pytest.raises(BackupError) as e:
        restore_backup(tmp_path / "climb.tgz", tmp_path / "t3")
    assert e.value.code == "unsafe" and not (tmp_path / "escape").exists()

    # not a backup at all
    (tmp_path / "x.tgz").write_bytes(b"hello")
    out = cli("restore", str(tmp_path / "x.tgz"), "--data-dir", str(tmp_path / "t4"))
    assert out.returncode == 1 and "damaged" in out.stderr and not (tmp_path / "t4").exists()

    # no profile to back up
    out = cli("backup", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "n.tgz"))
    assert out.returncode == 1 and "no Hailstone profile" in out.stderr
    assert not (tmp_path / "n.tgz").exists()

    # a failed restore leaves no half-unpacked folder behind
    assert not list(tmp_path.glob(".*.restore-*"))

    # an empty folder (a volume's mount point, /var/lib/hailstone) is a fine target:
    # a failed restore leaves it empty, a good one fills it and leaves nothing else
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackupError):
        restore_backup(tmp_path / "evil.tgz", tmp_path / "empty")
    assert not list((tmp_path / "empty").iterdir())
    restore_backup(tmp_path / "b.tgz", tmp_path / "empty")
    assert not list((tmp_path / "empty").glob(".restore-*"))
    assert (tmp_path / "empty" / "node.secret").stat().st_mode & 0o777 == 0o600
    restored = Profile(tmp_path / "empty")
    assert restored.account_public_key() == Profile(tmp_path / "p").account_public_key()
    assert bytes(restored.node_key().verify_key) == bytes(Profile(tmp_path / "p").node_key().verify_key)


def _rewrite(data: bytes, name: str, content: bytes, *, add: bool = False) -> bytes:
    """The backup with one member replaced, or added (then listed in the manifest)."""
    src = tarfile.open(fileobj=io.BytesIO(data))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for member in src:
            body = src.extractfile(member).read()
            if member.name == MANIFEST and add:
                info = tarfile.TarInfo(name)
                info.size = len(content)
                dst.addfile(info, io.BytesIO(content))
                doc = json.loads(body)
                doc["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(),
                                      "size": len(content), "mode": 0o600}
                body = json.dumps(doc).encode()
            elif member.name == name:
                body = content
            member.size = len(body)
            dst.addfile(member, io.BytesIO(body))
    return buf.getvalue()


def test_a_unit_that_finishes_during_the_backup_is_neither_lost_nor_redone(tmp_path, monkeypatch) -> None:
    """The order of reads, made to happen: checkpoints are copied, then the unit is
    stored and its checkpoint deleted (the runner's order), then the ledger is read."""
    from engine import Verifier
    from engine.cpu import CpuBackend
    from network import backup
    from network.node import Node, NodeConfig

    def start(data_dir, profile) -> Node:
        node = Node(NodeConfig(data_dir=data_dir, params=DEV, listen=("/ip4/127.0.0.1/tcp/0",),
                               bootstrap=()), profile, profile.node_key())
        node.start()
        return node

    profile = make_profile(tmp_path / "p", "racer")
    node = start(tmp_path / "p", profile)
    try:
        a = node.next_assignment()
        job = Verifier(DEV, a.lo, a.hi, CpuBackend(DEV), checkpoint=a.checkpoint)
        for _ in job.run():
            pass
        snapshot = backup._ledger_snapshot

        def unit_finishes_then_snapshot(src, dst) -> None:
            node.submit_unit(a, job.result())
            job.discard_checkpoint()
            snapshot(src, dst)

        monkeypatch.setattr(backup, "_ledger_snapshot", unit_finishes_then_snapshot)
        create_backup(tmp_path / "p", tmp_path / "b.tgz")
        job.close()
    finally:
        node.stop()
    with tarfile.open(tmp_path / "b.tgz") as tar:
        names = tar.getnames()
    assert any(n.startswith("checkpoints/") for n in names)  # copied before it went
    restore_backup(tmp_path / "b.tgz", tmp_path / "r")
    assert my_work_units(tmp_path / "r") == [a.unit]  # and the result is in the ledger
    with Ledger.in_dir(tmp_path / "r") as ledger:
        (row,) = ledger.records(kind="work")
    work = codec.parse(row.data).record
    assert f"evidence/{work.evidence_cid}" in names  # its leaves came along
    restored = start(tmp_path / "r", Profile(tmp_path / "r"))
    try:
        assert restored.next_assignment().unit == a.unit + 1  # not computed again
    finally:
        restored.stop()
