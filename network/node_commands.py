"""The `node` sub-command: a headless contributor (engine + network)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import Params, by_name, parse_devices
from engine.commands import add_gpu_devices_argument
from engine.settings import (
    ENGINE_SETTINGS,
    SETTINGS_FILE,
    Setting,
    SettingsStore,
    effective_cores,
)
from network import logsetup
from network.bandwidth import COVERAGE, open_ipfs
from network.identity import Profile, default_data_dir, delegate
from network.ipfs import IpfsError
from network.keystore import KeystoreError
from network.ledger import LedgerError
from network.node import Node, NodeConfig
from network.release import ReleaseNotice, ReleaseWatcher, off_reason, release_keys
from network.runner import NodeRunner
from network.settings import NETWORK_SETTINGS

log = logging.getLogger("hailstone.node")

USAGE_ERROR = 2
FAILED = 1
# Ctrl-C and `kill`/`systemctl stop`/`docker stop`: both end the node between batches.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# `kill -USR1` pauses computing after the current batch (the network stays up: records
# are still exchanged and checked), `kill -USR2` resumes it: `systemctl kill -s USR1`.
PAUSE_SIGNAL = signal.SIGUSR1
RESUME_SIGNAL = signal.SIGUSR2
# A stop signal is honoured within this many seconds, however loaded the machine.
STOP_DEADLINE_S = 4.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "node",
        help="run a headless contributor (engine + network)",
        description="Compute units and exchange signed records with other nodes, without a GUI. "
        "Stops cleanly on Ctrl-C or SIGTERM and resumes where it stopped.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="profile directory")
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help="swarm listen address (repeatable; default: the listen_port setting, 4001)")
    p.add_argument("--peer", action="append", default=[], metavar="MULTIADDR", help="peer to connect to (repeatable)")
    p.add_argument("--no-bootstrap", action="store_true", help="do not contact the public bootstrap peers")
    p.add_argument("--params", default=None,
                   help="parameter set: production or dev (default: the params setting)")
    p.add_argument("--status-file", type=Path, default=None, help="JSON status, rewritten every few seconds")
    p.add_argument("--cores", type=int, default=None,
                   help="CPU threads (default: the cpu_cores setting; 0 there: all cores but one)")
    p.add_argument("--cpu-share", type=int, default=None, metavar="PERCENT",
                   help="compute this share of the time and rest the remainder "
                   "(default: the cpu_share setting, 100)")
    p.add_argument("--backend", default=None,
                   help="cpu or gpu (default: gpu when the gpu_enabled setting is on, "
                   "falling back to the CPU without a usable GPU)")
    add_gpu_devices_argument(p)
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help="account passphrase, needed once to authorise a new node key")
    p.add_argument("--ipfs", default=None, choices=("embedded", "rpc"),
                   help="IPFS backend (default: the ipfs_backend setting, embedded)")
    p.add_argument("--api", default=None, metavar="MULTIADDR",
                   help="kubo RPC API address (with --ipfs rpc; default: the kubo_api_addr setting)")
    p.add_argument("--claim-ttl", type=int, default=900, help="seconds a claim on a unit lasts")
    p.add_argument("--spot-check-share", type=float, default=None,
                   help="share of compute spent re-checking other accounts' blocks "
                   "(default: the spot_check_share setting, 0.02; at most 0.5)")
    p.add_argument("--bandwidth-limit", type=int, default=None, metavar="KIB_S",
                   help="pace what this node publishes and fetches to about KIB_S KiB/s each "
                   "way; 0: no limit (default: the bandwidth_limit_kib setting, 0)")
    p.add_argument("--head-interval", type=float, default=5.0, help=argparse.SUPPRESS)
    p.add_argument("--reannounce-interval", type=float, default=10.0, help=argparse.SUPPRESS)
    # (tests that wait for the orderly stop's last log line give it longer)
    p.add_argument("--stop-deadline", type=float, default=STOP_DEADLINE_S, help=argparse.SUPPRESS)
    p.add_argument("--unit-limit", type=int, default=None, metavar="N",
                   help="only work on units below N (a local test network)")
    p.add_argument("--paused", action="store_true",
                   help="start with computing paused: the node joins the network, and "
                   "SIGUSR2 starts computing (SIGUSR1 pauses it again)")
    p.add_argument("--metrics", default=None, metavar="[HOST:]PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics "
                   "(HOST defaults to 127.0.0.1; name another address to expose them)")
    add_logging_arguments(p)
    p.add_argument("--verbose", action="store_true", help="same as --log-level info")
    p.set_defaults(func=cmd_node)


def add_logging_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", choices=logsetup.LEVELS, default=None,
                   help="least severe level logged (default: warning; info with --verbose)")
    p.add_argument("--log-format", choices=logsetup.FORMATS, default="text",
                   help="text lines, or one JSON object a line (for log collectors)")


def _fail(message: str, code: int = USAGE_ERROR) -> int:
    print(f"hailstone: {message}", file=sys.stderr)
    return code


def _ensure_delegation(profile: Profile, passphrase_file: Path | None) -> None:
    """Make sure this node key is authorised by the account (asks the passphrase once)."""
    node_key = profile.ensure_node_key()
    node_pub = bytes(node_key.verify_key)
    account = profile.account_public_key()
    if any(d.node == node_pub and d.account == account and not d.revoked for d in profile.delegations()):
        return
    if passphrase_file is None:
        raise KeystoreError(
            "needs_passphrase",
            "this node key is not authorised yet: pass --passphrase-file once to authorise it",
        )
    passphrase = passphrase_file.read_text(encoding="utf-8").rstrip("\n")
    logsetup.SECRETS.add(passphrase)
    account_key = profile.unlock_account(passphrase)
    import time

    profile.store_record(delegate(account_key, node_pub, int(time.time())))


@dataclass(frozen=True, slots=True)
class NodeOptions:
    """What `main.py node` runs with: the profile's settings, its flags winning."""

    params: Params
    backend: str
    gpu_devices: tuple[int, ...]
    cores: int
    share: float
    config: NodeConfig
    bandwidth_limit_kib: int = 0
    release_keys: tuple[str, ...] = ()  # keys whose release records raise a notice


def read_settings(data_dir: Path) -> SettingsStore:
    """The profile's settings.json as the app wrote it, read-only (the app owns it)."""
    store = SettingsStore(
        Path(data_dir) / SETTINGS_FILE, ENGINE_SETTINGS + NETWORK_SETTINGS, read_only=True
    )
    return store


def _flag(setting: Setting, value: object, flag: str) -> object:
    """A flag's value checked against its setting's declaration (the same bounds)."""
    try:
        return setting.validate(value)
    except ValueError as exc:
        raise ValueError(f"{flag}: {str(exc).removeprefix(setting.key + ': ')}") from None


def node_options(args: argparse.Namespace, settings: Mapping[str, Any], data_dir: Path) -> NodeOptions:
    """The node's options: each flag given wins over its setting, the rest come from
    the settings (engine/settings.py, network/settings.py: declared once, read by the
    app and by this command).

    Raises:
        ValueError: a bad flag, in one line.
    """
    values = dict(settings)
    declared = {s.key: s for s in ENGINE_SETTINGS + NETWORK_SETTINGS}
    params = by_name(args.params or values["params"])
    backend = args.backend or ("gpu" if values["gpu_enabled"] else "cpu")
    if backend not in ("cpu", "gpu"):
        raise ValueError(f"unknown backend {backend!r} (choose cpu or gpu)")
    if args.cores is not None and args.cores < 1:
        raise ValueError("--cores must be at least 1")
    cores = args.cores or effective_cores(values["cpu_cores"])
    if args.cpu_share is not None:
        values["cpu_share"] = _flag(declared["cpu_share"], args.cpu_share, "--cpu-share")
    gpu_devices = (
        parse_devices(args.gpu_devices) if args.gpu_devices else tuple(values["gpu_devices"])
    )
    if args.ipfs is not None:
        values["ipfs_backend"] = args.ipfs
    if args.api is not None:
        values["kubo_api_addr"] = args.api
    if args.spot_check_share is not None:
        values["spot_check_share"] = _flag(
            declared["spot_check_share"], args.spot_check_share, "--spot-check-share"
        )
    if getattr(args, "bandwidth_limit", None) is not None:
        values["bandwidth_limit_kib"] = _flag(
            declared["bandwidth_limit_kib"], args.bandwidth_limit, "--bandwidth-limit"
        )
    overrides: dict[str, Any] = {
        "peers": tuple(args.peer),
        "claim_ttl_s": args.claim_ttl,
        "head_interval_s": args.head_interval,
        "reannounce_interval_s": args.reannounce_interval,
        "unit_limit": args.unit_limit,
    }
    if args.listen:
        overrides["listen"] = tuple(args.listen)
    if args.no_bootstrap:
        overrides["bootstrap"] = ()
    config = NodeConfig.from_settings(values, data_dir=Path(data_dir), params=params, **overrides)
    return NodeOptions(
        params=params,
        backend=backend,
        gpu_devices=gpu_devices,
        cores=cores,
        share=values["cpu_share"] / 100.0,
        config=config,
        bandwidth_limit_kib=int(values["bandwidth_limit_kib"]),
        release_keys=tuple(values["release_keys"]),
    )


class NodeStartError(Exception):
    """The node cannot start: a one-line reason and the exit code to return."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class PreparedNode:
    """A profile ready to run as a node: its options, account and node key checked."""

    data_dir: Path
    opts: NodeOptions
    profile: Profile
    node_key: Any
    metrics_address: Any | None
    metrics_flag: str | None = None  # --metrics as given, for messages


def prepare_node(args: argparse.Namespace, *, configure_logging: bool = True) -> PreparedNode:
    """Read the profile's settings and flags, check the account and the node key's
    delegation (asking the passphrase file once). Logging is set up here (the
    profile's log file) unless the caller hosts several nodes and did it itself.

    Raises:
        NodeStartError: a bad flag (exit 2), no account, a locked key (exit 1).
    """
    data_dir = Path(args.data_dir or default_data_dir())
    settings = read_settings(data_dir)
    try:
        opts = node_options(args, settings.values(), data_dir)
    except ValueError as exc:
        raise NodeStartError(str(exc), USAGE_ERROR) from None
    metrics_address = None
    if args.metrics is not None:
        from network.metrics import parse_address

        try:
            metrics_address = parse_address(args.metrics)
        except ValueError as exc:
            raise NodeStartError(str(exc), USAGE_ERROR) from None
    profile = Profile(data_dir)
    if not profile.has_account():
        raise NodeStartError(
            f"no account in {data_dir}: create one with 'main.py account create' or import one"
        )
    if configure_logging:
        logsetup.configure(
            level=args.log_level or ("info" if args.verbose else "warning"),
            fmt=args.log_format,
            data_dir=Path(data_dir),
        )
    for warning in settings.warnings:
        log.warning("settings: %s", warning)
    try:
        logsetup.SECRETS.add(profile.secret_path.read_bytes())
    except OSError:
        pass  # no node key yet: _ensure_delegation makes one
    try:
        _ensure_delegation(profile, args.passphrase_file)
        node_key = profile.node_key()
        logsetup.SECRETS.add(profile.secret_path.read_bytes())
    except (KeystoreError, OSError) as exc:
        raise NodeStartError(str(exc)) from None
    return PreparedNode(data_dir, opts, profile, node_key, metrics_address, args.metrics)


@dataclass
class HeadlessNode:
    """A started node with its runner (and metrics server, release watcher): what
    `main.py node` runs; bench/swarm_host.py runs several in one process."""

    node: Node
    runner: NodeRunner
    metrics: Any | None = None
    releases: ReleaseWatcher | None = None

    def close(self) -> None:
        """Stop the extras and the node (after `runner.run()` returned)."""
        if self.releases is not None:
            self.releases.stop()
        if self.metrics is not None:
            self.metrics.close()
        self.node.stop()


def start_headless(
    prepared: PreparedNode,
    *,
    status_file: Path | None,
    after_ipfs_open: Callable[[], None] = lambda: None,
    progress: Callable[[NodeRunner], None] | None = None,
) -> HeadlessNode:
    """Open IPFS and the node, make its runner, serve metrics and watch releases.
    `after_ipfs_open` runs once the embedded kubo has started (it takes the stop
    signals then: the caller re-arms its handlers there).

    Raises:
        NodeStartError: IPFS, the ledger or the metrics port failed (nothing left open).
    """
    opts = prepared.opts
    node: Node | None = None
    ipfs = None
    try:
        # The IPFS node is opened here, paced by the bandwidth limit, and handed to
        # the node (which owns it from then on, as when it opens one itself).
        ipfs = open_ipfs(opts.config, opts.bandwidth_limit_kib)
        after_ipfs_open()
        node = Node(opts.config, prepared.profile, prepared.node_key, ipfs=ipfs)
        node.start()
    except (IpfsError, LedgerError, OSError) as exc:
        if node is not None:
            node.stop()
        elif ipfs is not None:
            ipfs.close()
        raise NodeStartError(f"cannot start the node: {exc}") from None
    except BaseException:
        if node is not None:
            node.stop()
        elif ipfs is not None:
            ipfs.close()
        raise
    runner = NodeRunner(
        node,
        backend=opts.backend,
        gpu_devices=opts.gpu_devices,
        cores=opts.cores,
        share=opts.share,
        status_file=status_file,
        progress=progress,
    )
    metrics = None
    if prepared.metrics_address is not None:
        from network.metrics import MetricsServer

        try:
            metrics = MetricsServer(runner, prepared.metrics_address)
        except OSError as exc:
            node.stop()
            raise NodeStartError(
                f"cannot serve metrics on {prepared.metrics_flag}: {exc.strerror or exc}"
            ) from None
        if not prepared.metrics_address.loopback:
            log.warning("metrics are served on %s, beyond this machine", metrics.url)
        print(f"hailstone metrics on {metrics.url}", file=sys.stderr)
    status = node.status()
    print(f"hailstone node {status.peer_id} on {', '.join(status.listen) or 'no address'}", file=sys.stderr)
    log.info("node %s started (%s parameters, %s backend, %d cores)",
             status.peer_id, opts.params.name, opts.backend, opts.cores)
    if opts.bandwidth_limit_kib:
        log.info("bandwidth limit %d KiB/s each way. %s", opts.bandwidth_limit_kib, COVERAGE)
    return HeadlessNode(node, runner, metrics, _watch_releases(node, opts))


def cmd_node(args: argparse.Namespace) -> int:
    try:
        prepared = prepare_node(args)
    except NodeStartError as exc:
        return _fail(str(exc), exc.code)
    # A stop asked for while the node starts (seconds) is honoured once it has started.
    stop_asked: list[int] = []

    def note_stop(signum: int, _frame: object) -> None:
        stop_asked.append(signum)

    def take_signals_back() -> None:
        # kubo took SIGINT and SIGTERM as its node started (see the WORKAROUND below):
        # take them back at once, so a stop asked for during the rest of the start
        # (the ledger, the records) is still honoured; only kubo's own start loses one.
        for s in STOP_SIGNALS:
            signal.signal(s, note_stop)

    tty = sys.stderr.isatty()

    def progress(r: NodeRunner) -> None:
        if tty and r.current is not None:
            print(
                f"\runit {r.current.unit}: {r.blocks_done}/{r.blocks_total} blocks, "
                f"{r.units_done} units done   ",
                end="",
                file=sys.stderr,
            )

    old = {s: signal.signal(s, note_stop) for s in STOP_SIGNALS}
    runners: list[NodeRunner] = []  # the one runner, once started
    # Armed before the start, so a pause signal never takes the default action (exit).
    old.update(arm_pause_signals(lambda: runners))
    try:
        headless = start_headless(
            prepared, status_file=args.status_file, after_ipfs_open=take_signals_back,
            progress=progress,
        )
    except NodeStartError as exc:
        _restore(old)
        return _fail(str(exc), exc.code)
    except BaseException:
        _restore(old)
        raise
    runner = headless.runner

    deadline: list[threading.Timer] = []

    def on_signal(signum, _frame) -> None:
        name = signal.Signals(signum).name
        if deadline:  # a second stop signal: no more waiting
            log.warning("%s received again: exiting now (nothing is lost)", name)
            _exit_now()
        log.warning("%s received: stopping after the current batch", name)
        deadline.append(arm_stop_deadline(args.stop_deadline))
        runner.stop()

    # WORKAROUND: the embedded kubo library (Go) takes over SIGINT and SIGTERM when its
    # node starts (not when the library loads: re-arming right after the load was
    # tried), and then neither stops the process nor calls Python's handler (checked
    # with a real `kill -TERM`). Setting the handlers again after node.start() puts
    # Python's C-level handler back; tests/test_node_service.py stops a real process so.
    # A signal that arrives during the start itself is lost to kubo.
    for s in STOP_SIGNALS:
        signal.signal(s, on_signal)
    arm_pause_signals(lambda: runners)  # again: kubo's start may have taken them
    if args.paused:
        runner.pause()
        log.warning("computing paused (--paused): send SIGUSR2 to start")
    runners.append(runner)
    if stop_asked:
        runner.stop()
        deadline.append(arm_stop_deadline(args.stop_deadline))
    try:
        runner.run()
    finally:
        headless.close()
        for timer in deadline:
            timer.cancel()
        _restore(old)
        log.info("node stopped; unit checkpoints kept")
        if tty:
            print(file=sys.stderr)
    return 0


def _watch_releases(node: Node, opts: NodeOptions) -> ReleaseWatcher | None:
    """Signed release records from the network: a newer version is logged once."""

    def on_notice(notice: ReleaseNotice) -> None:
        log.warning("%s", notice.text)
        print(f"hailstone: {notice.text}", file=sys.stderr)

    reason = off_reason(opts.release_keys)
    if reason:
        log.info("%s", reason)
        return None
    watcher = ReleaseWatcher(
        node.ipfs, node.config.network_name, release_keys(opts.release_keys),
        node.config.data_dir, on_notice=on_notice,
    )
    try:
        watcher.start()
    except IpfsError as exc:  # notices are a courtesy: the node runs without them
        log.warning("new-version notices are off: %s", exc)
        return None
    return watcher


def arm_stop_deadline(seconds: float, exit_now: Callable[[], None] | None = None) -> threading.Timer:
    """Exit the process `seconds` after a stop signal if the orderly stop is not done.

    The orderly stop waits for the current batch, then closes the fetchers, the
    embedded kubo and the ledger; on a loaded machine (24 nodes on two cores) that
    took 11-21 s. Nothing waits on it for safety: every record, outbox entry and
    checkpoint is on disk (fsync'd) when it is made, and a process killed at any
    point loses nothing (kill -9 is tested at every stage), at most the batch being
    computed. So a service manager's stop is honoured within STOP_DEADLINE_S.
    """
    timer = threading.Timer(seconds, exit_now or _exit_now)
    timer.daemon = True
    timer.name = "hailstone-stop-deadline"
    timer.start()
    return timer


def arm_pause_signals(runners: Callable[[], list[NodeRunner]]) -> dict:
    """SIGUSR1 pauses and SIGUSR2 resumes computing in every runner `runners()` lists.

    The handler runs on the main thread between bytecodes, possibly while that thread
    holds the session's lock, so it only starts a thread that gives the command.

    Returns:
        The handlers these replaced, for `_restore`.
    """

    def on_signal(signum: int, _frame: object) -> None:
        pause = signum == PAUSE_SIGNAL
        log.warning("%s received: %s computing", signal.Signals(signum).name,
                    "pausing" if pause else "resuming")

        def command() -> None:
            for r in runners():
                r.pause() if pause else r.resume()

        threading.Thread(target=command, name="hailstone-pause", daemon=True).start()

    return {s: signal.signal(s, on_signal) for s in (PAUSE_SIGNAL, RESUME_SIGNAL)}


def _exit_now() -> None:
    log.warning("the orderly stop did not finish in time: exiting now (nothing is lost)")
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(0)


def _restore(old: dict) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
