"""`main.py node` as a service: metrics scraped over HTTP, logs, a clean stop on SIGTERM."""

from __future__ import annotations

import base64
import io
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from network import logsetup
from network.metrics import METRIC_NAMES, parse_address
from tests.netutil import (
    PASSPHRASE,
    ROOT,
    NodeProcess,
    assert_nothing_lost,
    free_port,
    make_profile,
    wait_until,
)

pytestmark = pytest.mark.network


def scrape(port: int) -> dict[str, dict[tuple, float]]:
    """GET /metrics with a real HTTP client: {sample name: {labels: value}}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def one(metrics: dict, name: str, **labels: str) -> float:
    return metrics[name][tuple(sorted(labels.items()))]


def secrets_of(node: NodeProcess) -> list[str]:
    """Every secret of the profile, in the forms a careless log line could show."""
    from network.identity import Profile

    profile = Profile(node.data_dir)
    raw = [
        bytes(profile.unlock_account(PASSPHRASE)),  # account key seed
        bytes(profile.node_key()),  # node key seed
        profile.secret_path.read_bytes(),  # node.secret
    ]
    forms = [PASSPHRASE]
    for blob in raw:
        forms += [blob.hex(), base64.b64encode(blob).decode(), base64.b64encode(blob).decode()[:20]]
    return forms


def test_metrics_logs_and_a_clean_stop_of_a_real_node(tmp_path) -> None:
    port = free_port()
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(PASSPHRASE + "\n")
    node = NodeProcess(
        tmp_path, "svc",
        extra=["--metrics", f"127.0.0.1:{port}", "--log-format", "json", "--log-level", "debug",
               "--passphrase-file", str(passphrase_file)],
    )
    # A node key this account has not authorised yet: the run reads the passphrase.
    (node.data_dir / "node.key").unlink()
    (node.data_dir / "node.secret").unlink()
    node.start()
    try:
        wait_until(lambda: node.status().get("units_done", 0) >= 1, 120, "a finished unit")
        first = scrape(port)
        wait_until(
            lambda: one(scrape(port), "hailstone_numbers_total", backend="cpu")
            > one(first, "hailstone_numbers_total", backend="cpu"),
            60, "the numbers counter to grow",
        )
        m = scrape(port)
        assert one(m, "hailstone_units_finished_total") >= 1
        assert one(m, "hailstone_numbers_per_second", backend="cpu") > 0
        assert one(m, "hailstone_compute_seconds_total", backend="cpu") > 0
        info = next(iter(m["hailstone_info"]))
        assert ("params", "dev") in info and ("backend", "cpu") in info
        assert one(m, "hailstone_peers") == 0
        # account, two delegations (the first node key and this one), work records
        assert one(m, "hailstone_ledger_records") >= 4
        assert one(m, "hailstone_ledger_bytes") > 0
        assert one(m, "hailstone_outbox_pending") >= 4  # no peer acknowledged anything
        assert one(m, "hailstone_my_units", status="reported_once") >= 1
        assert one(m, "hailstone_units_verified") == 0  # one account cannot verify alone
        assert one(m, "hailstone_claims_active") >= 1 and one(m, "hailstone_claim_held") == 1
        assert sum(v for (k, v) in m["hailstone_state"].items()) == 1
        assert 0 <= one(m, "hailstone_checkpoint_age_seconds") < 600
        assert one(m, "hailstone_errors_total") == 0
        assert one(m, "hailstone_scrape_failures_total") == 0
        # every documented family is there (the alert rules and dashboard rely on them)
        for name in METRIC_NAMES:
            assert any(s == name or s.startswith(name + "_") for s in m), name
        assert "hailstone_rejected_records_total" not in m or all(
            v == 0 for v in m["hailstone_rejected_records_total"].values()
        )
        # doctor beside the running node: its port answers, its live ledger checks out
        from engine import DEV
        from network import doctor

        cfg = doctor.DoctorConfig(data_dir=node.data_dir, params=DEV,
                                  listen=(f"/ip4/127.0.0.1/tcp/{node.port}",))
        checks = {c.name: c for c in doctor.check_network(cfg)}
        assert checks["listen"].status == "ok" and "the running node" in checks["listen"].summary
        assert checks["ipfs"].status == "ok"  # a second IPFS node, on another port
        assert doctor.check_ledger(cfg).status == "ok"
        assert doctor.check_keys(cfg).status == "ok"
        # SIGTERM while a unit computes: exit 0, the unit's checkpoint stays.
        wait_until(lambda: node.status().get("blocks_done", 0) > 0, 60, "a unit in progress")
        proc = node.proc
        # the embedded Go runtime got its settings from the process's own environment
        # (main.py ran itself again with them, in the same process)
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
        assert b"GOGC=25" in environ and b"HAILSTONE_GO_ENV=1" in environ
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        node.proc = None
    finally:
        node.stop()
    log_text = node.log_file.read_text()
    assert "SIGTERM received" in log_text and "node stopped; unit checkpoints kept" in log_text
    assert_nothing_lost(node.data_dir)
    # The metrics endpoint is gone with the process.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5)

    # The profile's log file: JSON lines, owner-only, and the same run's story.
    log_file = node.data_dir / "logs" / "node.log"
    assert log_file.stat().st_mode & 0o077 == 0
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[-1])
    assert any(rec["level"] == "DEBUG" for rec in lines)
    assert lines[-1]["message"] == "node stopped; unit checkpoints kept"
    # No secret in any log of the run.
    everything = log_text + log_file.read_text()
    for secret in secrets_of(node):
        assert secret not in everything, "a secret reached the logs"


def test_metrics_follow_a_two_node_network_to_verified_units(tmp_path) -> None:
    from engine import DEV

    port = free_port()
    a = NodeProcess(tmp_path, "mia", extra=["--unit-limit", "2", "--metrics", str(port)]).start()
    try:
        wait_until(lambda: a.status().get("listen"), 30, "mia's address")
        b = NodeProcess(tmp_path, "max", peers=[a.address], extra=["--unit-limit", "2"]).start()
        try:
            def settled() -> dict | None:
                m = scrape(port)
                done = (one(m, "hailstone_units_verified") == 2
                        and one(m, "hailstone_outbox_pending") == 0)
                return m if done else None

            m = wait_until(settled, 180, "two verified units in mia's metrics")
        finally:
            b.stop()
    finally:
        a.stop()
    assert one(m, "hailstone_peers") >= 1
    assert one(m, "hailstone_frontier_units") == 2
    assert one(m, "hailstone_frontier_bound") == float(DEV.unit_range(1)[1])
    assert one(m, "hailstone_my_units", status="verified") == 2  # both accounts did both
    assert one(m, "hailstone_units_finished_total") == 2
    assert one(m, "hailstone_ledger_records") >= 8  # 2 accounts, 2 delegations, 4 works
    assert sum(m["hailstone_rejected_records_total"].values()) == 0


def test_a_stop_asked_for_while_the_node_starts_is_honoured(tmp_path) -> None:
    """SIGTERM as Node.start() begins (before kubo's start takes the signals): the
    command notes it, starts, and stops at once with status 0."""
    profile = make_profile(tmp_path / "early", "early")
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
import main
from network.node import Node

real_start = Node.start

def start(self):
    os.kill(os.getpid(), signal.SIGTERM)
    real_start(self)

Node.start = start
sys.exit(main.main(["node", "--data-dir", {str(profile.data_dir)!r}, "--params", "dev",
                    "--no-bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0", "--cores", "1",
                    "--log-level", "info", "--stop-deadline", "60"]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "node stopped; unit checkpoints kept" in out.stderr
    assert not (profile.data_dir / "checkpoints").exists()  # no unit was begun


def test_bad_metrics_address_is_refused_before_anything_starts(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "node", "--data-dir", str(tmp_path / "x"),
         "--metrics", "127.0.0.1:http"],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 2
    assert "the port must be a number" in out.stderr
    assert not (tmp_path / "x").exists()


def test_a_busy_metrics_port_stops_the_node_with_a_message(tmp_path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        profile = make_profile(tmp_path / "busy", "busy")
        out = subprocess.run(
            [sys.executable, str(ROOT / "main.py"), "node", "--data-dir", str(profile.data_dir),
             "--params", "dev", "--no-bootstrap", "--listen", "/ip4/127.0.0.1/tcp/0",
             "--metrics", str(port)],
            capture_output=True, text=True, timeout=120,
        )
    assert out.returncode == 1
    assert f"cannot serve metrics on {port}" in out.stderr
    assert "Traceback" not in out.stderr


def test_metrics_address_parsing() -> None:
    assert parse_address("9464") == parse_address("127.0.0.1:9464")
    assert parse_address(":9464").host == "127.0.0.1"
    assert parse_address("[::1]:9").host == "::1" and parse_address("[::1]:9").loopback
    assert not parse_address("0.0.0.0:9464").loopback
    assert parse_address("localhost:1").loopback
    for bad in ("::1:9", "1.2.3.4:99999", "x"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_logs_under_journald_carry_priorities_and_no_time(tmp_path, monkeypatch) -> None:
    stream = open(tmp_path / "journal", "w+")  # noqa: SIM115 - closed below
    try:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logsetup.configure(level="info", fmt="text", stream=stream)
        logging.getLogger("hailstone.test").warning("disk %s", "nearly full")
        logging.getLogger("hailstone.test").info("started")
        stream.flush()
        lines = (tmp_path / "journal").read_text().splitlines()
    finally:
        _reset_logging()
        stream.close()
    assert lines == ["<4>WARNING hailstone.test: disk nearly full", "<6>INFO hailstone.test: started"]


def test_json_logs_under_journald_carry_priorities(tmp_path, monkeypatch) -> None:
    stream = open(tmp_path / "journal", "w+")  # noqa: SIM115 - closed below
    try:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        logsetup.configure(level="info", fmt="json", stream=stream)
        logging.getLogger("hailstone.test").error("no disk")
        stream.flush()
        (line,) = (tmp_path / "journal").read_text().splitlines()
    finally:
        _reset_logging()
        stream.close()
    assert line.startswith("<3>{")
    doc = json.loads(line[3:])
    assert (doc["level"], doc["logger"], doc["message"]) == ("ERROR", "hailstone.test", "no disk")


def test_sigint_stops_a_real_node_cleanly(tmp_path) -> None:
    node = NodeProcess(tmp_path, "ctrlc").start()
    try:
        wait_until(lambda: node.status().get("blocks_done", 0) > 0, 120, "a unit in progress")
        node.proc.send_signal(signal.SIGINT)
        assert node.proc.wait(timeout=60) == 0
        node.proc = None
    finally:
        node.stop()
    text = node.log_file.read_text()
    assert "SIGINT received" in text and "Traceback" not in text
    assert_nothing_lost(node.data_dir)


def test_a_node_started_paused_computes_on_sigusr2_and_pauses_on_sigusr1(tmp_path) -> None:
    node = NodeProcess(tmp_path, "paused", extra=["--paused", "--unit-limit", "4"]).start()
    try:
        wait_until(lambda: node.status().get("state") == "paused", 60, "the paused state")
        # Paused from the start: the network runs (the status is written), nothing computed.
        node.proc.send_signal(signal.SIGUSR1)  # pausing again changes nothing, exits nothing
        for _ in range(3):
            status = node.status()
            assert status["state"] == "paused" and status["units_done"] == 0
            assert status["unit"] is None and status["blocks_done"] == 0
            threading.Event().wait(1.0)
        node.proc.send_signal(signal.SIGUSR2)
        wait_until(lambda: node.status().get("blocks_done", 0) > 0, 120, "computing after SIGUSR2")
        node.proc.send_signal(signal.SIGUSR1)
        wait_until(lambda: node.status().get("state") == "paused", 60, "paused after SIGUSR1")
        done = node.status()["blocks_done"]
        threading.Event().wait(3.0)
        assert node.status()["blocks_done"] == done  # no batch after the pause
        assert node.stop() == 0
    finally:
        node.stop()
    text = node.log_file.read_text()
    assert "SIGUSR2 received: resuming" in text and "SIGUSR1 received: pausing" in text
    assert "Traceback" not in text
    assert_nothing_lost(node.data_dir)


def test_plain_stderr_gets_times_and_secrets_are_redacted(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    stream = io.StringIO()
    try:
        path = logsetup.configure(level="info", fmt="text", data_dir=tmp_path, stream=stream)
        logsetup.SECRETS.add("hunter2-secret")
        logsetup.SECRETS.add(b"\x01\x02\x03\x04\xff")
        logging.getLogger("hailstone.test").info("got %s and %s", "hunter2-secret", "01020304ff")
        # rotated files stay owner-only too
        (rotating,) = [h for h in logging.getLogger().handlers
                       if isinstance(h, logging.handlers.RotatingFileHandler)]
        rotating.doRollover()
        logging.getLogger("hailstone.test").info("after the rollover")
        modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "logs").iterdir()}
    finally:
        _reset_logging()
    assert modes == {"node.log": 0o600, "node.log.1": 0o600}
    line = stream.getvalue().splitlines()[0]
    assert line.endswith("INFO hailstone.test: got [redacted] and [redacted]")
    assert line[:4].isdigit()  # a time stamp first
    assert path == tmp_path / "logs" / "node.log"
    rotated = (tmp_path / "logs" / "node.log.1").read_text()
    assert "[redacted]" in rotated and "hunter2" not in rotated
    assert "after the rollover" in path.read_text()
    with pytest.raises(ValueError):
        logsetup.configure(level="loud")


def _reset_logging() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_hailstone", False)]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.WARNING)
    logging.captureWarnings(False)


def test_the_stop_deadline_exits_only_if_the_orderly_stop_is_late() -> None:
    """A stop signal is honoured within STOP_DEADLINE_S: past it the process exits
    (everything is on disk already); an orderly stop in time cancels that."""
    from network.node_commands import arm_stop_deadline

    fired = threading.Event()
    arm_stop_deadline(0.05, fired.set)
    assert fired.wait(5.0)
    late = threading.Event()
    arm_stop_deadline(0.2, late.set).cancel()
    assert not late.wait(0.5)
