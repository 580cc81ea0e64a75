"""Prometheus metrics of a headless node (`main.py node --metrics 127.0.0.1:PORT`).

A custom collector reads the runner and the node *at scrape time*: nothing is
polled or copied in between, so a scrape always shows the node as it is, and
an idle endpoint costs nothing. The names below are the contract the sample
Grafana dashboard and alert rules in packaging/monitoring/ rely on
(`METRIC_NAMES`; a test checks both files against it).

The endpoint is prometheus_client's own HTTP server on a daemon thread, bound
to loopback unless the operator names another address.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
)

from network.ledger import LEDGER_FILENAME
from network.rejection import REASON_CODES
from network.state import UNIT_STATUSES

if TYPE_CHECKING:
    from network.runner import NodeRunner

log = logging.getLogger("hailstone.metrics")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9464
RUNNER_STATES = ("computing", "idle", "paused", "preparing", "syncing", "error")

# Every metric this module exports (counter names without their _total suffix).
METRIC_NAMES = (
    "hailstone_info",
    "hailstone_state",
    "hailstone_numbers_per_second",
    "hailstone_numbers",
    "hailstone_compute_seconds",
    "hailstone_units_finished",
    "hailstone_blocks_checked",
    "hailstone_my_units",
    "hailstone_units_verified",
    "hailstone_frontier_units",
    "hailstone_frontier_bound",
    "hailstone_current_unit",
    "hailstone_unit_blocks_done",
    "hailstone_unit_blocks_total",
    "hailstone_peers",
    "hailstone_ledger_records",
    "hailstone_ledger_bytes",
    "hailstone_outbox_pending",
    "hailstone_records_waiting",
    "hailstone_rejected_records",
    "hailstone_claims_active",
    "hailstone_claim_held",
    "hailstone_disputes_confirmed",
    "hailstone_units_disputed",
    "hailstone_checkpoint_age_seconds",
    "hailstone_errors",
    "hailstone_last_error_timestamp_seconds",
    "hailstone_last_error",
    "hailstone_scrape_failures",
)


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def parse_address(text: str) -> Address:
    """`PORT`, `HOST:PORT` or `[V6]:PORT`; the host defaults to loopback.

    Raises:
        ValueError: with a sentence that says what is wrong.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = DEFAULT_HOST, text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"--metrics {text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    host = host or DEFAULT_HOST
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--metrics {text!r}: the port must be a number, e.g. 127.0.0.1:9464") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"--metrics {text!r}: the port must be between 0 and 65535")
    return Address(host, port)


def _version() -> str:
    try:
        return metadata.version("hailstone")
    except metadata.PackageNotFoundError:
        return "unknown"


class NodeCollector:
    """Reads a `NodeRunner` (and its node) at every scrape."""

    def __init__(self, runner: NodeRunner, clock=time.time) -> None:
        self.runner = runner
        self._clock = clock
        self._failures = 0

    def describe(self) -> list[Metric]:
        # No pre-registration check: describing would call collect() on the node.
        return []

    def collect(self) -> Iterator[Metric]:
        r = self.runner
        yield from self._compute_metrics(r)
        try:
            node_metrics = list(self._node_metrics(r))
        except Exception:  # noqa: BLE001 - a scrape must answer even if the node is stopping
            log.exception("metrics: reading the node failed")
            self._failures += 1
            node_metrics = []
        yield from node_metrics
        c = CounterMetricFamily(
            "hailstone_scrape_failures", "Scrapes that could not read the node's state."
        )
        c.add_metric([], self._failures)
        yield c

    def _compute_metrics(self, r: NodeRunner) -> Iterator[Metric]:
        s = r.stats.snapshot()
        backends = sorted(set(s.numbers) | {r.backend_name})
        rate = GaugeMetricFamily(
            "hailstone_numbers_per_second",
            "Integers verified per second of compute, every integer of the range counted "
            "(smoothed over the last batches).",
            labels=["backend"],
        )
        numbers = CounterMetricFamily(
            "hailstone_numbers", "Integers verified by this process, every integer counted.",
            labels=["backend"],
        )
        seconds = CounterMetricFamily(
            "hailstone_compute_seconds", "Seconds spent computing (rest periods excluded).",
            labels=["backend"],
        )
        for b in backends:
            rate.add_metric([b], s.rate.get(b, 0.0))
            numbers.add_metric([b], s.numbers.get(b, 0))
            seconds.add_metric([b], s.seconds.get(b, 0.0))
        yield from (rate, numbers, seconds)

        state = StateSetMetricFamily("hailstone_state", "What the compute loop is doing.")
        state.add_metric([], {name: r.state == name for name in RUNNER_STATES})
        yield state

        c = CounterMetricFamily(
            "hailstone_units_finished", "Units computed and stored by this process."
        )
        c.add_metric([], s.units_finished)
        yield c
        c = CounterMetricFamily(
            "hailstone_blocks_checked",
            "Blocks of other accounts' work recomputed (spot-checks and dispute confirmations).",
        )
        c.add_metric([], s.blocks_checked)
        yield c

        current = r.current
        g = GaugeMetricFamily("hailstone_current_unit", "The unit being computed (-1: none).")
        g.add_metric([], current.unit if current is not None else -1)
        yield g
        g = GaugeMetricFamily("hailstone_unit_blocks_done", "Blocks of the current unit done.")
        g.add_metric([], r.blocks_done if current is not None else 0)
        yield g
        g = GaugeMetricFamily("hailstone_unit_blocks_total", "Blocks in the current unit.")
        g.add_metric([], r.blocks_total if current is not None else 0)
        yield g
        g = GaugeMetricFamily(
            "hailstone_checkpoint_age_seconds",
            "Seconds since the last checkpoint write (NaN before the first one).",
        )
        g.add_metric([], self._clock() - s.checkpoint_at if s.checkpoint_at else math.nan)
        yield g

        c = CounterMetricFamily("hailstone_errors", "Failures of the compute loop (see the log).")
        c.add_metric([], s.errors)
        yield c
        g = GaugeMetricFamily(
            "hailstone_last_error_timestamp_seconds",
            "When the last failure happened (0: none yet).",
        )
        g.add_metric([], s.last_error_at)
        yield g
        info = InfoMetricFamily("hailstone_last_error", "The last failure's message.")
        info.add_metric([], {"message": s.last_error})
        yield info

    def _node_metrics(self, r: NodeRunner) -> Iterator[Metric]:
        node = r.node
        status = node.status()
        st = node.state()
        info = InfoMetricFamily("hailstone", "This node.")
        info.add_metric([], {
            "version": _version(),
            "params": node.params.name,
            "peer_id": status.peer_id,
            "backend": r.backend_name,
        })
        yield info

        mine = GaugeMetricFamily(
            "hailstone_my_units", "Units this account reported, by network status.",
            labels=["status"],
        )
        counts = dict.fromkeys(UNIT_STATUSES, 0)
        for _unit, unit_status, _cid in node.my_units():
            counts[unit_status] = counts.get(unit_status, 0) + 1
        for name, n in sorted(counts.items()):
            mine.add_metric([name], n)
        yield mine

        for name, doc, value in (
            ("hailstone_units_verified", "Units the network holds as verified.",
             status.units_verified),
            ("hailstone_frontier_units", "Consecutive verified units from unit 0.",
             status.frontier),
            ("hailstone_frontier_bound",
             "Every integer below this is verified (as a float: it exceeds 2^53).",
             float(status.frontier_bound)),
            ("hailstone_peers", "Connected IPFS peers.", status.peers),
            ("hailstone_ledger_records", "Valid records in the ledger.", status.records),
            ("hailstone_ledger_bytes", "Size of the ledger files (database and WAL).",
             _ledger_bytes(node.config.data_dir)),
            ("hailstone_outbox_pending", "Own records no peer has acknowledged yet.",
             status.outbox),
            ("hailstone_records_waiting",
             "Received records waiting for the record they depend on.", status.pending),
            ("hailstone_disputes_confirmed", "Confirmed disputes (proven wrong results).",
             len(st.confirmed_disputes)),
            ("hailstone_units_disputed", "Units hit by a confirmed dispute.",
             sum(1 for u in st.units.values() if u.disputed)),
        ):
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], value)
            yield g

        rejected = CounterMetricFamily(
            "hailstone_rejected_records", "Records from the network refused, by reason.",
            labels=["reason"],
        )
        # Every known reason from zero, so rate() sees the first rejection of each.
        counts = {**dict.fromkeys(REASON_CODES, 0), **status.rejected_by_reason}
        for reason, n in sorted(counts.items()):
            rejected.add_metric([reason], n)
        yield rejected

        claims = node.ledger.active_claims()
        g = GaugeMetricFamily("hailstone_claims_active", "Unexpired claims on units (all nodes).")
        g.add_metric([], len(claims))
        yield g
        g = GaugeMetricFamily("hailstone_claim_held", "1 while this node holds a claim.")
        g.add_metric([], int(any(c.node == node.node_pub for c in claims)))
        yield g


def _ledger_bytes(data_dir) -> int:
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += (data_dir / (LEDGER_FILENAME + suffix)).stat().st_size
        except OSError:
            pass
    return total


class MetricsServer:
    """The HTTP endpoint; `close()` stops it."""

    def __init__(self, runner: NodeRunner, address: Address) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(runner))
        self._server, self._thread = start_http_server(
            address.port, addr=address.host, registry=self.registry
        )
        self.host = address.host
        self.port = self._server.server_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
