"""A swarm of real nodes on loopback, driven through scenarios and measured.

    .venv/bin/python bench/swarm.py --nodes 16 --scenario steady --out swarm.json

Starts N `main.py node` processes (embedded kubo, 127.0.0.1 only, dev parameters,
--unit-limit, --no-bootstrap), each with its own profile and given 1-3 earlier nodes
as --peer (a sparse graph: discovery and relaying are real), then runs one scenario:

- steady:    every node computes; time until all agree (one state digest, the same
             record count, frontier at the limit, outboxes empty);
- churn:     kill -9 and restart a fifth of the nodes every --churn-interval seconds
             while they compute (--churn-rounds times);
- partition: SIGSTOP a third of the nodes for --partition-s while the rest compute,
             then SIGCONT; time to heal;
- hostile:   a rogue node in this process floods garbage, oversized, tampered,
             forged and replayed records, claims for every unit and heads that point
             at missing content (and, with --fresh-accounts K, K valid fresh accounts
             a round), while the honest nodes compute;
- mixed:     hostile and churn at once (the test suite's short run);
- late:      after agreement, --late nodes join with one peer each; time to catch up.

The nodes start with computing paused (`main.py node --paused`) and are released
together (SIGUSR2) once every node has a peer, so every scenario starts from a
running network: starting 24 processes on two cores takes 40-120 s, and without the
barrier the first nodes finish the range before the last have started, which turns
half the swarm into late joiners (that case has its own scenario). `--no-barrier`
starts each node computing at once, as before.

--per-process K runs K nodes in each process (bench/swarm_host.py: one Python, one
Go runtime, the embedded kubo's registry holding K nodes); kill -9 and SIGSTOP then
act on whole processes, and CPU and RSS per node are the process's shared out.

Every scenario ends with an idle window (CPU, RSS, loopback bytes per node), a ledger
audit (results lost, reported twice, units computed by more accounts than needed) and
a SIGTERM of every node, timed. While it waits for agreement it traces, every 10 s,
which of agreement's conditions still fail (`convergence`: nodes short of the limit,
outbox entries, digests, record counts, fetch backlog, records pending), and from the
nodes' last status it sums their IPFS gets by kind and where their network loops
spent their time (`network_loop`, with the longest single steps). Every wait is bounded by its own limit and by
--stop-by (UTC HH:MM): past it the harness stops everything. Every process it
started is killed at the end, on error and on Ctrl-C. The JSON report goes to stdout
and --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.priority import PRIORITIES, PRIORITY_ENV  # noqa: E402
from tests.netutil import free_port, make_profile  # noqa: E402

# Each verified unit needs two accounts' reports (PROTOCOL §5); more is waste.
REPORTS_NEEDED = 2


class Deadline(Exception):
    """--stop-by has passed: stop everything now."""


class Clock:
    """The harness's one time limit (--stop-by), checked by every wait."""

    def __init__(self, stop_by: float | None) -> None:
        self.stop_by = stop_by

    def left(self) -> float:
        return float("inf") if self.stop_by is None else self.stop_by - time.time()

    def check(self) -> None:
        if self.left() <= 0:
            raise Deadline("--stop-by reached")

    def sleep(self, seconds: float) -> None:
        self.check()
        time.sleep(max(0.0, min(seconds, self.left())))
        self.check()


class Member:
    """One node: its profile, port, peers and status file; it runs in a `Host`."""

    ports: set[int] = set()  # every port handed to a node of this run
    # Arguments every node is given besides its own (--cpu-share).
    extra_args: list[str] = []

    def __init__(self, base: Path, name: str, unit_limit: int, claim_ttl: int) -> None:
        self.name = name
        self.data_dir = base / name
        self.status_file = base / f"{name}.json"
        # free_port() can hand out a port twice before either node binds it, and kubo
        # binds with SO_REUSEPORT: two nodes then share a port and one never finds the
        # other (an 8-node run had a node alone with 0 peers). Never reuse one.
        self.port = free_port()
        while self.port in Member.ports:
            self.port = free_port()
        Member.ports.add(self.port)
        self.unit_limit = unit_limit
        self.claim_ttl = claim_ttl
        self.peers: list[str] = []
        self.paused = False  # start with computing paused (the start barrier)
        self.host: Host | None = None
        # [from, until] unix seconds while this node could not receive (killed until
        # its restart listens again, or SIGSTOPped); until is None while it lasts.
        self.down: list[list[float | None]] = []
        make_profile(self.data_dir, name)

    def node_args(self) -> list[str]:
        """What `main.py node` is given for this node."""
        return [
            "--data-dir", str(self.data_dir), "--params", "dev",
            "--listen", f"/ip4/127.0.0.1/tcp/{self.port}", "--no-bootstrap",
            "--status-file", str(self.status_file), "--cores", "1",
            "--unit-limit", str(self.unit_limit), "--claim-ttl", str(self.claim_ttl),
            *[a for p in self.peers for a in ("--peer", p)],
            *(["--paused"] if self.paused else []),
            *Member.extra_args,
        ]

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.host.proc if self.host is not None else None

    @property
    def stopped(self) -> bool:
        return self.host is not None and self.host.stopped

    def alive(self) -> bool:
        return self.host is not None and self.host.alive()

    def status(self) -> dict:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def address(self) -> str | None:
        listen = self.status().get("listen") or []
        return listen[0] if listen else None


class Host:
    """One process: `main.py node` for a single member, bench/swarm_host.py for
    several (--per-process). Signals, kill -9 and restarts act on all its members."""

    # Extra environment for every process (--go-env: the embedded Go runtime reads
    # GOMAXPROCS, GOMEMLIMIT, GOGC only from the environment the process starts with).
    env: dict[str, str] = {}

    def __init__(self, base: Path, members: list[Member]) -> None:
        self.members = members
        self.name = members[0].name if len(members) == 1 else f"{members[0].name}-{members[-1].name}"
        self.base = base
        self.log_file = base / f"{self.name}.log"
        self.proc: subprocess.Popen | None = None
        self.stopped = False  # SIGSTOPped
        self.starts = 0
        for m in members:
            m.host = self

    def start(self) -> None:
        for m in self.members:
            with contextlib.suppress(FileNotFoundError):
                m.status_file.unlink()
        if len(self.members) == 1:
            args = [sys.executable, str(ROOT / "main.py"), "node", *self.members[0].node_args()]
        else:
            spec = self.base / f"{self.name}.spec.json"
            spec.write_text(json.dumps([m.node_args() for m in self.members]))
            args = [sys.executable, str(ROOT / "bench" / "swarm_host.py"), str(spec)]
        with open(self.log_file, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, **self.env} if self.env else None)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def went_down(self) -> None:
        for m in self.members:
            if not (m.down and m.down[-1][1] is None):
                m.down.append([time.time(), None])

    def came_up(self) -> None:
        for m in self.members:
            if m.down and m.down[-1][1] is None:
                m.down[-1][1] = time.time()

    def kill9(self) -> None:
        self.went_down()
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None
        self.stopped = False


class Swarm:
    def __init__(self, base: Path, n: int, unit_limit: int, claim_ttl: int, clock: Clock,
                 seed: int, per_process: int = 1) -> None:
        self.base = base
        self.clock = clock
        self.rng = random.Random(seed)
        self.unit_limit = unit_limit
        self.claim_ttl = claim_ttl
        self.per_process = max(1, per_process)
        self.members: list[Member] = []
        self.hosts: list[Host] = []
        self.events: list[dict] = []
        self.convergence: list[dict] = []
        self.t0 = time.monotonic()
        self._add(n)

    def _add(self, n: int) -> list[Member]:
        new = [Member(self.base, f"n{len(self.members) + i:03d}", self.unit_limit, self.claim_ttl)
               for i in range(n)]
        self.members.extend(new)
        return new

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def note(self, what: str, **kw) -> None:
        self.events.append({"t": self.now(), "what": what, **kw})
        print(f"[{self.now():7.1f}] {what} {kw if kw else ''}", file=sys.stderr, flush=True)

    def wait(self, predicate, timeout: float, poll: float = 1.0) -> float | None:
        """Seconds until `predicate()` held, or None after `timeout` (or --stop-by)."""
        start = time.monotonic()
        while True:
            if predicate():
                return round(time.monotonic() - start, 1)
            if time.monotonic() - start > timeout:
                return None
            self.clock.sleep(poll)

    def _host_groups(self, members: list[Member], batch: int) -> list[list[Host]]:
        """The hosts to start, in batches: members already in a host (a restart) go
        back to it; new ones fill hosts of --per-process members (the very first
        node of the run alone: the others need its address)."""
        old = list(dict.fromkeys(m.host for m in members if m.host is not None))
        fresh = [m for m in members if m.host is None]
        new: list[Host] = []
        first_alone = bool(fresh) and not self.hosts
        if first_alone:
            new.append(Host(self.base, fresh[:1]))
            fresh = fresh[1:]
        while fresh:
            new.append(Host(self.base, fresh[:self.per_process]))
            fresh = fresh[self.per_process:]
        self.hosts.extend(new)
        groups: list[list[Host]] = []
        rest = old + new
        if first_alone:
            groups.append([new[0]])
            rest = rest[1:]
        current: list[Host] = []
        for h in rest:  # batches of at least `batch` nodes
            current.append(h)
            if sum(len(x.members) for x in current) >= batch:
                groups.append(current)
                current = []
        if current:
            groups.append(current)
        return groups

    def start_members(self, members: list[Member], batch: int = 4) -> None:
        """Start in batches, each node given 1-3 peers among the nodes already up."""
        for group in self._host_groups(members, batch):
            up = [a for m in self.members if m.alive() and (a := m.address())]
            for h in group:
                for m in h.members:
                    if up and not m.peers:
                        m.peers = self.rng.sample(up, self.rng.randint(1, min(3, len(up))))
                h.start()
            nodes = [m for h in group for m in h.members]
            # a host starts its nodes one after the other
            limit = 60 + 30 * max(len(h.members) for h in group)
            got = self.wait(lambda g=nodes: all(m.address() or not m.alive() for m in g), limit, 0.5)
            for h in group:
                h.came_up()
            dead = [m.name for m in nodes if not m.alive()]
            if got is None or dead:
                logs = {h.name: h.log_file.read_text(errors="replace")[-800:] for h in group
                        if h.log_file.exists()}
                raise RuntimeError(f"nodes did not start: {dead or [m.name for m in nodes]}; "
                                   f"their logs end: {logs}")

    def release(self, limit: float) -> float | None:
        """The start barrier: wait (at most `limit`) until every node has a peer, then
        let all compute at once (SIGUSR2); they started with `--paused`. Returns the
        wait, or None if some node was still alone at the limit (released anyway)."""
        waited = self.wait(lambda: all((m.status().get("peers") or 0) > 0 for m in self.members),
                           limit, 0.5)
        for m in self.members:
            m.paused = False  # a restart computes at once
        for h in self.hosts:
            h.signal(signal.SIGUSR2)
        self.note("computing released", waited_for_peers=waited)
        return waited

    def pick_hosts(self, share: float, exclude: Host | None = None) -> list[Host]:
        """Random hosts holding at least `share` of the nodes (at least one host)."""
        pool = [h for h in self.hosts if h is not exclude]
        self.rng.shuffle(pool)
        picked: list[Host] = []
        want = max(1, int(len(self.members) * share))
        for h in pool:
            if sum(len(x.members) for x in picked) >= want:
                break
            picked.append(h)
        return picked

    def live(self) -> list[Member]:
        return [m for m in self.members if m.alive() and not m.stopped]

    def agreed(self, members: list[Member] | None = None) -> bool:
        members = members if members is not None else self.members
        statuses = [m.status() for m in members]
        self._trace(statuses)
        return (
            all(s.get("frontier") == self.unit_limit and s.get("outbox") == 0 for s in statuses)
            and len({s.get("state_digest") for s in statuses}) == 1
            and len({s.get("records") for s in statuses}) == 1
        )

    def _trace(self, statuses: list[dict], every_s: float = 10.0) -> None:
        """Every `every_s` of waiting for agreement, which of its conditions still fail:
        nodes short of the limit, outbox entries unacknowledged, state digests and
        record counts that differ (the report's `convergence`)."""
        if self.convergence and self.now() - self.convergence[-1]["t"] < every_s:
            return
        records = [s.get("records") or 0 for s in statuses]
        self.convergence.append({
            "t": self.now(),
            "short_of_limit": sum(s.get("frontier") != self.unit_limit for s in statuses),
            "outbox": sum(s.get("outbox") or 0 for s in statuses),
            "nodes_with_outbox": sum(bool(s.get("outbox")) for s in statuses),
            "digests": len({s.get("state_digest") for s in statuses}),
            "records_min": min(records, default=0),
            "records_max": max(records, default=0),
            "fetch_backlog": sum((s.get("fetch") or {}).get("backlog", 0) for s in statuses),
            # records held back until what they depend on arrives (a delegation, a work)
            "pending": sum(s.get("pending") or 0 for s in statuses),
            # how long a fresh claim settles now, the longest of the nodes' (DeliveryLag)
            "claim_settle_s_max": max((s.get("claim_settle_s") or 0 for s in statuses), default=0),
        })

    def first_done(self) -> bool:
        return any(m.status().get("frontier") == self.unit_limit for m in self.live())

    def close(self) -> None:
        for h in self.hosts:
            if h.stopped:
                h.signal(signal.SIGCONT)
            h.kill9()


# --- measurements ---------------------------------------------------------------------


def _lo_bytes() -> int:
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == "lo":
            fields = rest.split()
            return int(fields[0]) + int(fields[8])
    return 0


def _tcp_bytes(pids: set[int]) -> dict[tuple[int, str], int]:
    """Bytes sent + received so far on each TCP socket of these processes (`ss -tinp`),
    keyed by (pid, local and peer address): each node's own gossip, unlike `lo`."""
    try:
        out = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[tuple[int, str], int] = {}
    key: tuple[int, str] | None = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            key = None
            fields = line.split()
            pid = next((int(p.split(",")[0]) for p in line.split("pid=")[1:]), None)
            if pid in pids and len(fields) >= 5:
                key = (pid, f"{fields[3]}>{fields[4]}")
        elif key is not None:
            n = 0
            for name in ("bytes_sent:", "bytes_received:"):
                if name in line:
                    n += int(line.split(name, 1)[1].split()[0])
            found[key] = n
            key = None
    return found


def _spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "max": round(max(values), 3)} if values else {}


def block_stores(swarm: Swarm) -> dict:
    """Each node's IPFS block store at the end (MiB of ipfs/blocks), median and max."""
    sizes = []
    for m in swarm.members:
        blocks = m.data_dir / "ipfs" / "blocks"
        sizes.append(sum(p.stat().st_size for p in blocks.glob("*/*.data")) / 2**20)
    return _spread(sizes)


def _live_hosts(swarm: Swarm) -> list[Host]:
    return [h for h in swarm.hosts if h.alive() and not h.stopped]


def idle_window(swarm: Swarm, seconds: float) -> dict:
    """CPU (% of one core) and RSS (MiB) per node, loopback bytes per node per minute.
    A process hosting K nodes counts as K nodes of 1/K of its figures each (and
    per process beside it)."""
    procs = {}
    for h in _live_hosts(swarm):
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(h.proc.pid)
            t = p.cpu_times()
            procs[h.name] = (p, t.user + t.system, len(h.members))
    pids = {p.pid for p, _c, _k in procs.values()}
    tcp0 = _tcp_bytes(pids)
    lo0, t0 = _lo_bytes(), time.monotonic()
    load0 = os.getloadavg()
    swarm.clock.sleep(seconds)
    elapsed = time.monotonic() - t0
    lo = _lo_bytes() - lo0
    tcp1 = _tcp_bytes(pids)
    per_pid: dict[int, int] = dict.fromkeys(pids, 0)
    for k, n in tcp1.items():  # (a socket closed during the window is not counted)
        before = tcp0.get(k, 0)
        # a socket closed and another opened between the same ports starts from 0
        per_pid[k[0]] += n - before if n >= before else n
    nodes_of = {p.pid: k for p, _c, k in procs.values()}
    cpu, rss, proc_cpu, proc_rss = [], [], [], []
    for p, c0, k in procs.values():
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            used = 100 * (t.user + t.system - c0) / elapsed
            mem = p.memory_info().rss / 2**20
            proc_cpu.append(used)
            proc_rss.append(mem)
            cpu += [used / k] * k
            rss += [mem / k] * k
    nodes = sum(nodes_of.values())
    report = {
        "seconds": round(elapsed, 1),
        "cpu_percent_of_core": _spread(cpu),
        "rss_mib": _spread(rss),
        # all loopback traffic (other programs' too): an upper bound on gossip
        "loopback_bytes_per_node_per_min": round(lo / max(1, nodes) / elapsed * 60),
        # each node's own TCP bytes (sent + received), per minute
        "tcp_bytes_per_node_per_min": _spread(
            [n / nodes_of[pid] / elapsed * 60 for pid, n in per_pid.items() for _ in range(nodes_of[pid])]),
        "cpu_percent_of_core_all_nodes": round(sum(proc_cpu), 1),
        "loadavg_1m": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
    }
    if swarm.per_process > 1:
        report["per_process"] = {"cpu_percent_of_core": _spread(proc_cpu), "rss_mib": _spread(proc_rss)}
    return report


def rss_now(swarm: Swarm) -> dict[str, float]:
    """RSS per node (MiB): its process's, shared out among the nodes it hosts."""
    out = {}
    for h in _live_hosts(swarm):
        with contextlib.suppress(psutil.Error, AttributeError):
            rss = psutil.Process(h.proc.pid).memory_info().rss / 2**20
            for m in h.members:
                out[m.name] = rss / len(h.members)
    return out


LIVE_WINDOW_S = 5.0  # the delivery target of issue #12


def _was_down(m: Member, start: float, end: float) -> bool:
    """Whether `m` was down at any moment of [start, end] (unix seconds)."""
    return any(frm <= end and (until is None or until >= start) for frm, until in m.down)


def _delays(measured: list[float]) -> dict:
    delays = sorted(measured) or [0.0]
    return {"median": round(statistics.median(delays), 2),
            "p95": round(delays[int(0.95 * (len(delays) - 1))], 2),
            "max": round(delays[-1], 2),
            "share_within_5s": round(sum(d <= LIVE_WINDOW_S for d in delays) / len(delays), 3),
            "count": len(measured)}


def audit(swarm: Swarm) -> dict:
    """Results lost (a node's own work record missing from another node's ledger),
    reported twice (one account, one unit, two work records) and extra reports."""
    own: dict[str, set[str]] = {}
    have: dict[str, set[str]] = {}
    works: dict[str, tuple[bytes, int]] = {}
    account_of: dict[str, bytes] = {}
    arrivals: dict[str, list[tuple[float, Member]]] = {}  # cid -> when each node stored it
    identities: dict[str, int] = {}  # account and delegation records each node holds
    for m in swarm.members:
        path = m.data_dir / "ledger.sqlite3"
        if not path.exists():
            continue
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("SELECT cid, account, unit, source FROM records WHERE kind = 'work'").fetchall()
            for cid, at in conn.execute(  # (identity records predate the later nodes)
                    "SELECT cid, received_at FROM records WHERE kind NOT IN ('account', 'delegation')"):
                arrivals.setdefault(cid, []).append((at, m))
            identities[m.name] = conn.execute(
                "SELECT COUNT(*) FROM records WHERE kind IN ('account', 'delegation')").fetchone()[0]
        finally:
            conn.close()
        have[m.name] = {cid for cid, *_ in rows}
        for cid, account, unit, _ in rows:
            works[cid] = (bytes(account), unit)
        own[m.name] = set()
        from network.identity import Profile

        account_of[m.name] = Profile(m.data_dir).account_public_key()
        own[m.name] = {cid for cid, account, _, _ in rows if bytes(account) == account_of[m.name]}
    lost = sorted({cid for mine in own.values() for cid in mine
                   for other in have.values() if cid not in other})
    per_account_unit: dict[tuple[bytes, int], int] = {}
    accounts_per_unit: dict[int, set[bytes]] = {}
    for account, unit in works.values():
        per_account_unit[(account, unit)] = per_account_unit.get((account, unit), 0) + 1
        accounts_per_unit.setdefault(unit, set()).add(account)
    # Delivery: when each other node stored a record, counted from the first node
    # that stored it (its author, or the first to hear of it); one clock, one machine.
    # "To live nodes" leaves out what no network could deliver in time: arrivals at a
    # node that was down (killed or stopped) after the record's first arrival, and
    # records whose first holder went down within 5 s of storing it.
    delays: list[float] = []
    live: list[float] = []
    for ats in arrivals.values():
        if len(ats) < 2:
            continue
        first, holder = min(ats, key=lambda a: a[0])
        holder_left = _was_down(holder, first, first + LIVE_WINDOW_S)
        for at, m in ats:
            if m is holder or at <= first:
                continue
            delays.append(at - first)
            if not holder_left and not _was_down(m, first, at):
                live.append(at - first)
    return {
        "delivery_s": _delays(delays),
        "delivery_to_live_nodes_s": _delays(live),
        "work_records": len(works),
        "units": len(accounts_per_unit),
        "results_lost": len(lost),
        "reported_twice": sum(c - 1 for c in per_account_unit.values() if c > 1),
        "extra_reports": sum(max(0, len(a) - REPORTS_NEEDED) for a in accounts_per_unit.values()),
        "records_per_node": _spread([len(h) for h in have.values()]),
        "identity_records_per_node": _spread(list(identities.values())),
    }


def fetches_and_peers(swarm: Swarm) -> dict:
    """From each node's last status, summed over the nodes: fetch jobs done, failed and
    timed out, IPFS gets by what they fetched (sync's work, less noisy than the
    outcome); and connected peers."""
    statuses = [m.status() for m in swarm.members]
    fetch = [s.get("fetch") or {} for s in statuses]
    peers = [s.get("peers", 0) for s in statuses if s]
    gets: dict[str, int] = {}
    for s in statuses:
        for kind, n in (s.get("gets") or {}).items():
            gets[kind] = gets.get(kind, 0) + n
    spent: dict[str, float] = {}
    longest: list[tuple[float, str, str]] = []
    for m, s in zip(swarm.members, statuses, strict=True):
        loop = s.get("loop") or {}
        for step, secs in (loop.get("spent_s") or {}).items():
            spent[step] = spent.get(step, 0.0) + secs
        if loop.get("longest"):
            longest.append((loop["longest_s"], loop["longest"], m.name))
    return {
        "fetches": {k: sum(f.get(k, 0) for f in fetch) for k in ("done", "failed", "timeouts")},
        "gets": dict(sorted(gets.items())),
        "peers_per_node": {"min": min(peers, default=0), **_spread(peers)},
        # Where the nodes' network loops spent their time, summed, and the longest
        # single steps (a slow step delays every message behind it).
        "network_loop": {
            "spent_s": {k: round(v, 1) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])},
            "longest": [[name, step, secs] for secs, step, name in sorted(longest, reverse=True)[:8]],
        },
    }


def sigterm_all(swarm: Swarm, limit: float) -> dict:
    """SIGTERM every process at once; seconds until each exited (killed past `limit`)."""
    started = time.monotonic()
    running = [h for h in swarm.hosts if h.alive()]
    for h in running:
        if h.stopped:
            h.signal(signal.SIGCONT)
            h.stopped = False
        h.signal(signal.SIGTERM)
    times, codes, killed = [], [], 0
    waiting = list(running)
    while waiting and time.monotonic() - started < limit:
        for h in [h for h in waiting if h.proc.poll() is not None]:
            codes.append(h.proc.returncode)
            times.append(time.monotonic() - started)
            waiting.remove(h)
        time.sleep(0.05)
    for h in waiting:
        killed += 1
        h.kill9()
    return {"seconds": _spread(times), "killed_after_limit": killed,
            "nonzero_exits": sum(1 for c in codes if c)}


class RssSampler:
    """Each node's largest RSS (rss_now) seen, every `every` seconds until stopped."""

    def __init__(self, swarm: Swarm, every: float = 2.0) -> None:
        self.swarm = swarm
        self.every = every
        self.peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for name, rss in rss_now(self.swarm).items():
                self.peak[name] = max(rss, self.peak.get(name, 0.0))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=30)
        return dict(self.peak)


# --- the rogue ------------------------------------------------------------------------


class Rogue:
    """A node in this process that floods the honest ones (bounded rate and time)."""

    def __init__(self, swarm: Swarm, peers: list[str], rate: float, oversize_kib: int,
                 fresh_accounts: int = 0) -> None:
        from engine import DEV
        from tests.netutil import InProcessNode

        self.swarm = swarm
        self.rate = rate
        self.oversize = oversize_kib * 1024
        self.fresh_accounts = fresh_accounts  # valid accounts a round (each record counts)
        self.inner = InProcessNode(swarm.base, "rogue", peers)
        self.topics = __import__("network.wire", fromlist=["topics"]).topics(DEV.name)
        self.sent: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.inner.start()

    def flood(self, seconds: float) -> None:
        self._thread = threading.Thread(target=self._run, args=(seconds,), daemon=True)
        self._thread.start()

    def _payloads(self) -> list[tuple[str, str, bytes]]:
        import dataclasses

        from network import codec, wire
        from network.ipfs.cid import cid_for_bytes

        node = self.inner.node
        out: list[tuple[str, str, bytes]] = [
            ("garbage", "records", os.urandom(200)),
            ("garbage_cbor", "records", wire.encode_announcement(b"\xa1garbage", "x")),
            ("oversized", "records", os.urandom(self.oversize)),
            ("missing_head", "heads", wire.sign_head(
                wire.Head(node.node_pub, cid_for_bytes(os.urandom(32)), 10**6), node.node_key)),
        ]
        works = node.ledger.records(kind="work")
        if works:
            w = self.swarm.rng.choice(works)
            signed = codec.parse(w.data)
            tampered = bytearray(w.data)
            tampered[len(tampered) // 2] ^= 0x01
            forged_sig = node.node_key.sign(codec.signed_bytes(signed.record)).signature
            out += [
                ("tampered", "records", wire.encode_announcement(bytes(tampered), "x")),
                ("forged", "records", wire.encode_announcement(
                    codec.encode(dataclasses.replace(signed, signature=forged_sig)), "x")),
                ("replayed", "records", wire.encode_announcement(w.data, w.cid)),
            ]
        if self.fresh_accounts:
            # Valid records every node keeps: an account and a delegation per fresh key.
            from bench.fresh_accounts import fresh_accounts

            # (each round's accounts claim the same names again: names are not unique)
            records = [(codec.record_cid(data), data)
                       for data in fresh_accounts(self.fresh_accounts, int(time.time()) - 60)]
            out += [("fresh_account_records", "records", msg)
                    for msg, _cids in wire.encode_announcements(records)]
        return out

    def _run(self, seconds: float) -> None:
        node = self.inner.node
        end = time.monotonic() + seconds
        unit = 0
        if self.rate <= 0:  # the control run: the same timeline, nothing sent
            self._stop.wait(max(0.0, min(seconds, self.swarm.clock.left())))
            return
        while not self._stop.is_set() and time.monotonic() < end and self.swarm.clock.left() > 0:
            tick = time.monotonic()
            for kind, topic, payload in self._payloads():
                node.ipfs.publish(self.topics[topic], payload)
                self.sent[kind] = self.sent.get(kind, 0) + 1
            if self.fresh_accounts:
                self.sent["fresh_accounts"] = self.sent.get("fresh_accounts", 0) + self.fresh_accounts
            # a claim on every unit, one more each tick
            with contextlib.suppress(Exception):
                node.claim(unit % (self.swarm.unit_limit + 50))
                self.sent["claim"] = self.sent.get("claim", 0) + 1
            unit += 1
            self._stop.wait(max(0.0, 1.0 / self.rate - (time.monotonic() - tick)))

    def wait(self) -> None:
        """Until the flood has run its time (or --stop-by)."""
        while self._thread is not None and self._thread.is_alive():
            self.swarm.clock.check()
            self._thread.join(timeout=1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.inner.stop()


# --- scenarios ------------------------------------------------------------------------


def run(args: argparse.Namespace, base: Path) -> dict:
    stop_by = None
    if args.stop_by:
        hh, mm = map(int, args.stop_by.split(":"))
        today = dt.datetime.now(dt.UTC)
        stop_by = today.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        if stop_by <= time.time():
            raise SystemExit(f"--stop-by {args.stop_by} UTC has passed")
    clock = Clock(stop_by)
    report: dict = {
        "scenario": args.scenario, "nodes": args.nodes, "unit_limit": args.unit_limit,
        "cpus": os.cpu_count(), "go_env": {k: v for k, v in Host.env.items() if k != PRIORITY_ENV},
        "per_process": args.per_process,
        "compute_priority": args.compute_priority,
        "cpu_share": args.cpu_share, "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    swarm = Swarm(base, args.nodes, args.unit_limit, args.claim_ttl, clock, args.seed,
                  args.per_process)
    rogue: Rogue | None = None
    try:
        t = time.monotonic()
        report["start_barrier"] = args.barrier
        for m in swarm.members:
            m.paused = args.barrier
        swarm.start_members(swarm.members)
        report["start_s"] = round(time.monotonic() - t, 1)
        swarm.note("all started")
        if args.barrier:
            report["peers_wait_s"] = swarm.release(60)
        scenario_t0 = time.monotonic()
        baseline_rss = rss_now(swarm)
        sampler = RssSampler(swarm)

        if args.scenario in ("hostile", "mixed"):
            rogue = Rogue(swarm, [a for m in swarm.members[:2] if (a := m.address())],
                          args.flood_rate, args.oversize_kib, args.fresh_accounts)
            rogue.start()
            rogue.flood(args.flood_s)
            swarm.note("flood started")
        if args.scenario in ("churn", "mixed"):
            kills = 0
            for r in range(args.churn_rounds):
                swarm.clock.sleep(args.churn_interval)
                victims = swarm.pick_hosts(0.2)
                for h in victims:
                    h.kill9()
                    kills += len(h.members)
                swarm.note("killed", round=r, nodes=[m.name for h in victims for m in h.members])
                swarm.start_members([m for h in victims for m in h.members])
            report["kills"] = kills
        elif args.scenario == "partition":
            swarm.clock.sleep(5)
            cut_hosts = swarm.pick_hosts(1 / 3, exclude=swarm.members[0].host)
            for h in cut_hosts:
                h.signal(signal.SIGSTOP)
                h.went_down()
                h.stopped = True
            cut = [m for h in cut_hosts for m in h.members]
            swarm.note("stopped", nodes=[m.name for m in cut])
            rest = [m for m in swarm.members if m not in cut]
            report["rest_agreed_during_partition_s"] = swarm.wait(
                lambda: swarm.agreed(rest), args.partition_s)
            swarm.clock.sleep(max(0.0, args.partition_s - (time.monotonic() - scenario_t0)))
            for h in cut_hosts:
                h.signal(signal.SIGCONT)
                h.came_up()
                h.stopped = False
            swarm.note("resumed")
            scenario_t0 = time.monotonic()  # heal time counts from the resume

        done = swarm.wait(swarm.first_done, args.timeout)
        report["first_node_at_limit_s"] = None if done is None else round(
            time.monotonic() - scenario_t0, 1)
        agreed = swarm.wait(swarm.agreed, args.timeout, poll=2.0)
        report["agreed"] = agreed is not None
        report["agreed_after_first_at_limit_s"] = agreed
        report["agreed_after_scenario_start_s"] = (
            None if agreed is None else round(time.monotonic() - scenario_t0, 1))
        swarm.note("agreement", seconds=agreed)
        if rogue is not None:
            rogue.wait()  # the flood lasts its whole --flood-s, agreement or not
            report["flood_sent"] = dict(rogue.sent)
            rogue.stop()
            rogue = None
            report["rejected_per_node"] = _spread(
                [m.status().get("rejected", 0) for m in swarm.members])

        if args.scenario == "late" and agreed is not None:
            t_late = time.monotonic()
            joiners = swarm._add(args.late)
            report["records_before_late"] = swarm.members[0].status().get("records")
            swarm.start_members(joiners)
            caught = swarm.wait(lambda: swarm.agreed(), args.timeout)
            report["late_joiners"] = args.late
            report["late_caught_up_s"] = None if caught is None else round(time.monotonic() - t_late, 1)

        # Largest RSS from the start to here (the flood, if any, included) less the
        # RSS right after the start: a steady run of the same size is the control.
        peak = sampler.stop()
        report["rss_growth_mib"] = _spread([peak[k] - baseline_rss[k] for k in peak if k in baseline_rss])
        report["rss_peak_mib"] = _spread(list(peak.values()))
        if args.idle_s > 0:
            if args.idle_settle_s > 0:
                swarm.clock.sleep(args.idle_settle_s)  # let the catch-up after agreement end
            report["idle"] = idle_window(swarm, args.idle_s)
            report["idle"]["settled_s"] = args.idle_settle_s
        report.update(fetches_and_peers(swarm))
        report["sigterm"] = sigterm_all(swarm, args.sigterm_limit)
        report["audit"] = audit(swarm)
        report["block_store_mib"] = block_stores(swarm)
        report["restarts"] = sum(h.starts - 1 for h in swarm.hosts)
    except Deadline:
        report["stopped_by_deadline"] = True
    except KeyboardInterrupt:
        report["interrupted"] = True
    finally:
        if rogue is not None:
            with contextlib.suppress(Exception):
                rogue.stop()
        swarm.close()
        report["events"] = swarm.events
        report["convergence"] = swarm.convergence
        report["wall_s"] = swarm.now()
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=8)
    p.add_argument("--scenario", choices=("steady", "churn", "partition", "hostile", "late", "mixed"),
                   default="steady")
    p.add_argument("--unit-limit", type=int, default=8)
    p.add_argument("--per-process", type=int, default=1, metavar="K",
                   help="nodes per process (bench/swarm_host.py): one Go runtime and one "
                   "Python for K nodes; kill -9 and SIGSTOP then act on all K")
    p.add_argument("--claim-ttl", type=int, default=30)
    p.add_argument("--timeout", type=float, default=240, help="each wait's limit (s)")
    p.add_argument("--idle-s", type=float, default=30)
    p.add_argument("--idle-settle-s", type=float, default=0,
                   help="wait this long after agreement before the idle window")
    p.add_argument("--go-env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment for every node's embedded Go runtime (GOMAXPROCS=1, ...)")
    p.add_argument("--sigterm-limit", type=float, default=60)
    p.add_argument("--churn-interval", type=float, default=60)
    p.add_argument("--churn-rounds", type=int, default=3)
    p.add_argument("--partition-s", type=float, default=120)
    p.add_argument("--flood-s", type=float, default=60)
    p.add_argument("--flood-rate", type=float, default=20, help="rounds of payloads per second (0: a control run, the rogue sends nothing)")
    p.add_argument("--oversize-kib", type=int, default=256)
    p.add_argument("--fresh-accounts", type=int, default=0,
                   help="valid fresh accounts (an account record and a delegation each) the rogue adds a round")
    p.add_argument("--late", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu-share", type=int, metavar="PERCENT",
                   help="each node computes this share of the time (main.py node --cpu-share): "
                   "N nodes on two cores each get what a machine of its own would leave "
                   "its network loop")
    p.add_argument("--compute-priority", choices=PRIORITIES, default="normal",
                   help="the nodes' compute threads (HAILSTONE_COMPUTE_PRIORITY; the "
                   "product's default is background). Normal here: the nodes share two "
                   "cores, so at background one node's compute waits behind every other "
                   "node's network loop, which no real deployment has (at 32 nodes it "
                   "got 2-9 %% of the CPU and the range did not finish in 240 s)")
    p.add_argument("--no-barrier", dest="barrier", action="store_false",
                   help="each node computes as soon as it starts (by default all start "
                   "paused and compute together once every node has a peer)")
    p.add_argument("--stop-by", help="UTC HH:MM: stop everything at this time")
    p.add_argument("--base", type=Path, help="folder for the profiles (default: a new temp folder)")
    p.add_argument("--out", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the profiles and logs")
    args = p.parse_args(argv)
    import tempfile

    base = args.base or Path(tempfile.mkdtemp(prefix="swarm-"))
    base.mkdir(parents=True, exist_ok=True)
    # SIGTERM to the harness: unwind through the finally that kills every node
    signal.signal(signal.SIGTERM, _interrupt)
    Host.env = dict(kv.split("=", 1) for kv in args.go_env)
    Host.env[PRIORITY_ENV] = args.compute_priority
    if args.cpu_share is not None:
        Member.extra_args = ["--cpu-share", str(args.cpu_share)]
    report = run(args, base)
    report["base"] = str(base)
    if args.base is None and report.get("agreed") and not args.keep:
        shutil.rmtree(base, ignore_errors=True)  # kept when something went wrong
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0 if report.get("agreed") else 1


if __name__ == "__main__":
    sys.exit(main())
