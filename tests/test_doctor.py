"""`main.py doctor`: a healthy profile passes; each broken part fails with what to do."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import DEV
from network import doctor as dr
from network.ledger import Ledger, stored_record
from tests.netutil import ROOT, free_port, make_profile

pytestmark = pytest.mark.network


def config(data_dir: Path, **changes) -> dr.DoctorConfig:
    base = dict(data_dir=data_dir, params=DEV, listen=("/ip4/127.0.0.1/tcp/0",))
    base.update(changes)
    return dr.DoctorConfig(**base)


def doctor_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HAILSTONE_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "doctor", *args],
                          capture_output=True, text=True, timeout=300, env=env)


def failing(checks: list[dr.Check]) -> dict[str, dr.Check]:
    return {c.name: c for c in checks if c.status == dr.FAIL}


def test_a_healthy_profile_passes(tmp_path) -> None:
    make_profile(tmp_path / "p", "healthy")
    # a peer that answers: a plain listening socket stands in for a node's port
    with socket.create_server(("127.0.0.1", 0)) as peer:
        port = peer.getsockname()[1]
        listen = free_port()
        out = doctor_cli("--data-dir", str(tmp_path / "p"), "--params", "dev", "--no-bootstrap",
                         "--listen", f"/ip4/127.0.0.1/tcp/{listen}",
                         "--peer", f"/ip4/127.0.0.1/tcp/{port}/p2p/QmPeer", "--json",
                         cache=tmp_path / "cache")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["ok"] is True
    by_name = {c["name"]: c for c in doc["checks"]}
    assert list(by_name) == ["python", "cpu", "gpu", "sieve_cache", "profile", "disk", "keys",
                             "ledger", "clock", "ipfs", "listen", "peers"]
    for name in ("python", "profile", "disk", "keys", "ledger", "ipfs", "peers"):
        assert by_name[name]["status"] == "ok", by_name[name]
    assert by_name["peers"]["summary"] == "1 of 1 peers answer"
    # the temporary IPFS node listened on the node's port, and this machine reached it
    assert by_name["listen"] == {**by_name["listen"], "status": "ok",
                                 "summary": f"port {listen} reachable from this machine"}
    # no cached dev sieve in a fresh cache folder: built on first use, not a failure
    assert by_name["sieve_cache"]["status"] == "warn" and by_name["sieve_cache"]["fix"]
    assert all(c["fix"] for c in doc["checks"] if c["status"] in ("warn", "fail"))


def test_with_a_status_file_the_report_says_whether_the_node_runs(tmp_path) -> None:
    out = doctor_cli("--data-dir", str(tmp_path / "nothing"), "--params", "dev", "--no-bootstrap",
                     "--listen", "/ip4/127.0.0.1/tcp/0", "--status-file",
                     str(tmp_path / "status.json"), "--json", cache=tmp_path / "cache")
    checks = json.loads(out.stdout)["checks"]
    assert checks[-1]["name"] == "health" and checks[-1]["status"] == "fail"
    assert "the node is not running" in checks[-1]["summary"]


def test_the_text_report_explains_each_failure(tmp_path) -> None:
    out = doctor_cli("--data-dir", str(tmp_path / "nothing"), "--params", "dev", "--no-bootstrap",
                     "--listen", "/ip4/127.0.0.1/tcp/0", cache=tmp_path / "cache")
    assert out.returncode == 1
    assert "FAIL  profile      " in out.stdout and "does not exist" in out.stdout
    assert "what to do: create an account: main.py account create" in out.stdout
    assert out.stdout.rstrip().endswith("failed: profile")


def test_each_broken_part_fails_clearly(tmp_path, monkeypatch) -> None:
    d = tmp_path / "p"
    profile = make_profile(d, "broken")

    # profile: missing, a file, no account, keys others can read
    assert dr.check_profile(config(tmp_path / "none")).status == dr.FAIL
    (tmp_path / "file").write_text("x")
    c = dr.check_profile(config(tmp_path / "file"))
    assert (c.status, c.summary) == (dr.FAIL, f"{tmp_path / 'file'} is not a folder")
    (tmp_path / "empty").mkdir()
    assert "has no account" in dr.check_profile(config(tmp_path / "empty")).summary
    os.chmod(d / "node.secret", 0o644)
    c = dr.check_profile(config(d))
    assert c.status == dr.FAIL and "node.secret (0o644" in c.summary and "chmod 600" in c.fix
    os.chmod(d / "node.secret", 0o600)
    assert dr.check_profile(config(d)).status == dr.OK

    # disk: less free space than asked for
    c = dr.check_disk(config(d, min_free_mb=10**9))
    assert c.status == dr.FAIL and "free some space" in c.fix

    # keys: a node.secret that does not open node.key
    good_secret = (d / "node.secret").read_bytes()
    (d / "node.secret").write_bytes(os.urandom(len(good_secret)))
    c = dr.check_keys(config(d))
    assert c.status == dr.FAIL and "node.secret does not open node.key" in c.summary
    assert "--passphrase-file" in c.fix
    (d / "node.secret").write_bytes(good_secret)
    assert dr.check_keys(config(d)).status == dr.OK

    # ledger: pages overwritten on disk
    with Ledger.in_dir(d) as ledger:
        for signed in profile.local_records():
            ledger.add_record(stored_record(signed))
    assert dr.check_ledger(config(d)).status == dr.OK
    raw = bytearray((d / "ledger.sqlite3").read_bytes())
    page = 4096
    raw[page:] = os.urandom(len(raw) - page)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ledger.sqlite3").write_bytes(bytes(raw))
    c = dr.check_ledger(config(tmp_path / "bad"))
    assert c.status == dr.FAIL and "integrity" in c.summary and "restore" in c.fix

    # clock: earlier than a record this ledger already stored
    future = tmp_path / "future"
    future.mkdir()
    with Ledger(future / "ledger.sqlite3", clock=lambda: time.time() + 3600) as ledger:
        ledger.add_record(stored_record(profile.local_records()[0]))
    c = dr.check_clock(config(future))
    assert c.status == dr.FAIL and "behind the newest record" in c.summary and "NTP" in c.fix

    # sieve cache: a file with the engine's header but damaged content
    from engine import sieve

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("HAILSTONE_CACHE_DIR", str(cache))
    bad = cache / "sieve-k4.bin"
    bad.write_bytes(sieve._CACHE_MAGIC + os.urandom(60))
    c = dr.check_sieve_cache(config(d))
    assert c.status == dr.FAIL and "sieve-k4.bin" in c.summary and "delete" in c.fix

    # peers: nothing answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # bound, never listening: connections are refused
        c = dr._check_peers(config(d, peers=(f"/ip4/127.0.0.1/tcp/{closed}/p2p/QmX",)))
        assert c.status == dr.FAIL and "no peer answers" in c.summary and "--peer" in c.fix

        # ipfs: the listen port is held by another program that does not answer
        checks = {ch.name: ch for ch in dr.check_network(
            config(d, listen=(f"/ip4/127.0.0.1/tcp/{closed}",)))}
    assert checks["ipfs"].status == dr.OK  # the library itself works, on another port
    assert checks["listen"].status == dr.FAIL and f"127.0.0.1:{closed}" in checks["listen"].summary
    assert "another --listen port" in checks["listen"].fix

    # ipfs: a kubo daemon (rpc) that is not there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api = f"/ip4/127.0.0.1/tcp/{s.getsockname()[1]}"
        checks = {ch.name: ch for ch in dr.check_network(config(d, ipfs_kind="rpc", api_addr=api))}
    assert checks["ipfs"].status == dr.FAIL and "does not start" in checks["ipfs"].summary
    assert "kubo daemon" in checks["ipfs"].fix and checks["listen"].status == dr.OK

    # gpu: a node told to use a GPU that is not there
    from engine import gpu

    if not gpu.probe().available:
        c = dr.check_gpu(config(d, backend="gpu"))
        assert c.status == dr.FAIL and "--backend cpu" in c.fix
        assert dr.check_gpu(config(d)).status == dr.WARN


def test_a_missing_package_fails_the_python_check(monkeypatch, tmp_path) -> None:
    assert dr.check_python(config(tmp_path)).status == dr.OK
    monkeypatch.setitem(dr.PACKAGES, "hailstone-no-such-dist", "hailstone_no_such_module")
    c = dr.check_python(config(tmp_path))
    assert c.status == dr.FAIL and "hailstone-no-such-dist" in c.summary and "reinstall" in c.fix


def test_a_check_that_breaks_is_reported_not_raised(monkeypatch, tmp_path) -> None:
    def explode(_c):
        raise RuntimeError("boom")

    monkeypatch.setattr(dr, "CHECKS", (explode,))
    (c,) = list(dr.run_checks(config(tmp_path)))
    assert (c.name, c.status) == ("explode", dr.FAIL) and "RuntimeError: boom" in c.summary


def test_health_from_the_status_file(tmp_path) -> None:
    f = tmp_path / "status.json"
    assert dr.health(f, 60).status == dr.FAIL  # not running
    f.write_text(json.dumps({"state": "computing", "peers": 3, "units_done": 7}))
    c = dr.health(f, 60)
    assert c.status == dr.OK and c.summary.startswith("computing") and "3 peers" in c.summary
    assert "old (limit 60 s)" in dr.health(f, 60, now=time.time() + 600).summary
    f.write_text(json.dumps({"state": "error"}))
    assert dr.health(f, 60).status == dr.FAIL
    f.write_text("{")
    assert dr.health(f, 60).status == dr.FAIL
    out = subprocess.run([sys.executable, str(ROOT / "main.py"), "doctor", "--health"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--health needs --status-file" in out.stderr
