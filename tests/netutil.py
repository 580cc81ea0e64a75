"""Helpers for tests with real node processes on loopback."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine import DEV
from network import keystore
from network.identity import Profile
from network.node import Node, NodeConfig

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "correct horse battery staple"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_profile(data_dir: Path, username: str) -> Profile:
    profile = Profile(data_dir)
    profile.create(username, PASSPHRASE, limits=keystore.MIN)
    return profile


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class NodeProcess:
    """`main.py node` in a child process, with its status file."""

    def __init__(self, base: Path, name: str, *, peers: list[str] = (), extra: list[str] = ()) -> None:
        self.name = name
        self.data_dir = base / name
        self.status_file = base / f"{name}.json"
        self.log_file = base / f"{name}.log"
        self.port = free_port()
        self.peers = list(peers)
        self.extra = list(extra)
        self.proc: subprocess.Popen | None = None
        if not Profile(self.data_dir).has_account():
            make_profile(self.data_dir, name)

    @property
    def address(self) -> str:
        return self.status()["listen"][0]

    def start(self) -> NodeProcess:
        args = [
            sys.executable, str(ROOT / "main.py"), "node",
            "--data-dir", str(self.data_dir), "--params", "dev",
            "--listen", f"/ip4/127.0.0.1/tcp/{self.port}", "--no-bootstrap",
            "--status-file", str(self.status_file), "--cores", "1",
            "--head-interval", "1", "--reannounce-interval", "2", "--verbose",
            "--stop-deadline", "60",  # the tests wait for the orderly stop
            *[a for p in self.peers for a in ("--peer", p)], *self.extra,
        ]
        if self.status_file.exists():
            self.status_file.unlink()
        log = open(self.log_file, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        wait_until(lambda: self.status_file.exists() or self._died(), 90, f"{self.name} to start")
        return self

    def _died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log_file.read_text()[-3000:]}")
        return False

    def status(self) -> dict:
        self._died()
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None


class InProcessNode:
    """A Node in the test process, polled on a thread (for forged or rogue traffic)."""

    def __init__(
        self,
        base: Path,
        name: str,
        peers: list[str],
        *,
        profile=None,
        params=DEV,
        clock: Callable[[], float] = time.time,
        port: int = 0,
        **config,
    ) -> None:
        # (port 0: the port may change when the embedded node is recycled, after which
        # peers that dialled it cannot reach it again; give a port when they must)
        self.profile = profile if profile is not None else make_profile(base / name, name)
        cfg = NodeConfig(
            data_dir=base / name, params=params, listen=(f"/ip4/127.0.0.1/tcp/{port}",),
            peers=tuple(peers), bootstrap=(), head_interval_s=1.0, reannounce_interval_s=2.0,
            **config,
        )
        self.node = Node(cfg, self.profile, self.profile.node_key(), clock=clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.node.poll(0.2)

    def start(self) -> InProcessNode:
        self.node.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.node.stop()


def digest(nodes: list[NodeProcess]) -> set[str]:
    return {n.status().get("state_digest") for n in nodes}


def assert_nothing_lost(data_dir) -> None:
    """After a stop: every unit this account began is reported or has its checkpoint
    (the one in progress), with no gap. A stop that falls exactly between two units
    leaves no checkpoint, and loses nothing either."""
    account = Profile(data_dir).account_public_key()
    conn = sqlite3.connect(f"file:{data_dir / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        reported = sorted(u for (u,) in conn.execute(
            "SELECT unit FROM records WHERE kind = 'work' AND account = ?", (account,)))
    finally:
        conn.close()
    kept = sorted(int(re.search(r"(\d+)\.ckpt$", p.name).group(1))
                  for p in (data_dir / "checkpoints").glob("*.ckpt"))
    assert reported == sorted(set(reported)), "a unit reported twice"
    assert set(reported) | set(kept) == set(range(len(reported) + len(kept))), (reported, kept)
    assert not kept or kept == [len(reported)], (reported, kept)
