"""The sample alert rules and Grafana dashboard name only metrics the node exports;
the release workflow builds and smoke-tests the container images."""

from __future__ import annotations

import json
import re

import yaml

from network.metrics import METRIC_NAMES
from tests.netutil import ROOT

MONITORING = ROOT / "packaging" / "monitoring"
# Sample names Prometheus derives from a family: counters and infos add a suffix.
SUFFIXES = ("", "_total", "_info", "_created")


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bhailstone_[a-z_]+\b", expr))


def known(name: str) -> bool:
    return any(name == base + suffix for base in METRIC_NAMES for suffix in SUFFIXES)


def test_the_alert_rules_are_complete_and_use_exported_metrics() -> None:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    rules = doc["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules}
    # the three the issue names: node stalled, no peers, rejections spiking
    assert {"HailstoneNodeStalled", "HailstoneNoPeers", "HailstoneRejectionsSpiking"} <= alerts
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = names_in(rule["expr"])
        assert used or "up{" in rule["expr"], rule["alert"]
        assert all(known(n) for n in used), (rule["alert"], used)


def test_the_dashboard_uses_exported_metrics() -> None:
    doc = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert doc["uid"] == "hailstone-nodes"
    used: set[str] = set()
    for panel in doc["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used |= names_in(target["expr"])
    assert used and all(known(n) for n in used), sorted(n for n in used if not known(n))
    # the list: throughput, units, frontier, peers, ledger, outbox, rejections,
    # claims, disputes, checkpoint age, last error
    for needed in ("hailstone_numbers_per_second", "hailstone_units_finished_total",
                   "hailstone_frontier_units", "hailstone_peers", "hailstone_ledger_records",
                   "hailstone_outbox_pending", "hailstone_rejected_records_total",
                   "hailstone_claims_active", "hailstone_disputes_confirmed",
                   "hailstone_checkpoint_age_seconds", "hailstone_last_error_info"):
        assert needed in used, needed


def test_the_release_workflow_builds_and_smoke_tests_both_images() -> None:
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    job = wf["jobs"]["container"]
    script = "\n".join(step.get("run", "") for step in job["steps"])
    for target in ("cpu", "cuda"):
        assert f"--target {target} -t hailstone:{target}" in script
    assert "docker stop -t 30 hs" in script and "State.ExitCode" in script
    assert "doctor --health" in script and "/metrics" in script
    assert "container" in wf["jobs"]["release"]["needs"]
