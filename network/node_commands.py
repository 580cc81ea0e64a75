"""The `node` sub-command: a headless contributor (engine + network)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Mapping
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
    p.add_argument("--unit-limit", type=int, default=None, metavar="N",
                   help="only work on units below N (a local test network)")
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


def cmd_node(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or default_data_dir())
    settings = read_settings(data_dir)
    try:
        opts = node_options(args, settings.values(), data_dir)
    except ValueError as exc:
        return _fail(str(exc))
    metrics_address = None
    if args.metrics is not None:
        from network.metrics import parse_address

        try:
            metrics_address = parse_address(args.metrics)
        except ValueError as exc:
            return _fail(str(exc))
    profile = Profile(data_dir)
    if not profile.has_account():
        return _fail(
            f"no account in {data_dir}: create one with 'main.py account create' or import one",
            FAILED,
        )
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
        return _fail(str(exc), FAILED)

    config = opts.config
    params = opts.params
    node: Node | None = None
    ipfs = None
    # A stop asked for while the node starts (seconds) is honoured once it has started.
    stop_asked: list[int] = []

    def note_stop(signum: int, _frame: object) -> None:
        stop_asked.append(signum)

    old = {s: signal.signal(s, note_stop) for s in STOP_SIGNALS}
    try:
        # The IPFS node is opened here, paced by the bandwidth limit, and handed to
        # the node (which owns it from then on, as when it opens one itself).
        ipfs = open_ipfs(config, opts.bandwidth_limit_kib)
        # kubo took SIGINT and SIGTERM as its node started (see the WORKAROUND below):
        # take them back at once, so a stop asked for during the rest of the start
        # (the ledger, the records) is still honoured; only kubo's own start loses one.
        for s in STOP_SIGNALS:
            signal.signal(s, note_stop)
        node = Node(config, profile, node_key, ipfs=ipfs)
        node.start()
    except (IpfsError, LedgerError, OSError) as exc:
        if node is not None:
            node.stop()
        elif ipfs is not None:
            ipfs.close()
        _restore(old)
        return _fail(f"cannot start the node: {exc}", FAILED)
    except BaseException:
        if node is not None:
            node.stop()
        elif ipfs is not None:
            ipfs.close()
        _restore(old)
        raise

    tty = sys.stderr.isatty()

    def progress(r: NodeRunner) -> None:
        if tty and r.current is not None:
            print(
                f"\runit {r.current.unit}: {r.blocks_done}/{r.blocks_total} blocks, "
                f"{r.units_done} units done   ",
                end="",
                file=sys.stderr,
            )

    cores = opts.cores
    runner = NodeRunner(
        node,
        backend=opts.backend,
        gpu_devices=opts.gpu_devices,
        cores=cores,
        share=opts.share,
        status_file=args.status_file,
        progress=progress,
    )

    def on_signal(signum, _frame) -> None:
        log.warning("%s received: stopping after the current batch", signal.Signals(signum).name)
        runner.stop()

    # WORKAROUND: the embedded kubo library (Go) takes over SIGINT and SIGTERM when its
    # node starts (not when the library loads: re-arming right after the load was
    # tried), and then neither stops the process nor calls Python's handler (checked
    # with a real `kill -TERM`). Setting the handlers again after node.start() puts
    # Python's C-level handler back; tests/test_node_service.py stops a real process so.
    # A signal that arrives during the start itself is lost to kubo.
    for s in STOP_SIGNALS:
        signal.signal(s, on_signal)
    if stop_asked:
        runner.stop()
    metrics = None
    if metrics_address is not None:
        from network.metrics import MetricsServer

        try:
            metrics = MetricsServer(runner, metrics_address)
        except OSError as exc:
            node.stop()
            _restore(old)
            return _fail(f"cannot serve metrics on {args.metrics}: {exc.strerror or exc}", FAILED)
        if not metrics_address.loopback:
            log.warning("metrics are served on %s, beyond this machine", metrics.url)
        print(f"hailstone metrics on {metrics.url}", file=sys.stderr)
    status = node.status()
    print(f"hailstone node {status.peer_id} on {', '.join(status.listen) or 'no address'}", file=sys.stderr)
    log.info("node %s started (%s parameters, %s backend, %d cores)",
             status.peer_id, params.name, opts.backend, cores)
    if opts.bandwidth_limit_kib:
        log.info("bandwidth limit %d KiB/s each way. %s", opts.bandwidth_limit_kib, COVERAGE)
    releases = _watch_releases(node, opts)
    try:
        runner.run()
    finally:
        if releases is not None:
            releases.stop()
        if metrics is not None:
            metrics.close()
        node.stop()
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


def _restore(old: dict) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
