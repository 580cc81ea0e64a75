"""The `node` sub-command: a headless contributor (engine + network)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from engine import by_name, parse_devices
from engine.commands import add_gpu_devices_argument
from network import logsetup
from network.identity import Profile, default_data_dir, delegate
from network.ipfs import IpfsError
from network.keystore import KeystoreError
from network.ledger import LedgerError
from network.node import Node, NodeConfig
from network.runner import NodeRunner

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
    p.add_argument("--listen", action="append", metavar="MULTIADDR", help="swarm listen address (repeatable)")
    p.add_argument("--peer", action="append", default=[], metavar="MULTIADDR", help="peer to connect to (repeatable)")
    p.add_argument("--no-bootstrap", action="store_true", help="do not contact the public bootstrap peers")
    p.add_argument("--params", default="production", help="parameter set: production or dev")
    p.add_argument("--status-file", type=Path, default=None, help="JSON status, rewritten every few seconds")
    p.add_argument("--cores", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--backend", default="cpu", help="cpu or gpu")
    add_gpu_devices_argument(p)
    p.add_argument("--passphrase-file", type=Path, default=None,
                   help="account passphrase, needed once to authorise a new node key")
    p.add_argument("--ipfs", default="embedded", choices=("embedded", "rpc"), help="IPFS backend")
    p.add_argument("--api", default=None, metavar="MULTIADDR", help="kubo RPC API address (with --ipfs rpc)")
    p.add_argument("--claim-ttl", type=int, default=900, help="seconds a claim on a unit lasts")
    p.add_argument("--spot-check-share", type=float, default=0.02,
                   help="share of compute spent re-checking other accounts' blocks")
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


def cmd_node(args: argparse.Namespace) -> int:
    try:
        params = by_name(args.params)
    except ValueError as exc:
        return _fail(str(exc))
    if args.backend not in ("cpu", "gpu"):
        return _fail(f"unknown backend {args.backend!r} (choose cpu or gpu)")
    if args.cores is not None and args.cores < 1:
        return _fail("--cores must be at least 1")
    try:
        gpu_devices = parse_devices(args.gpu_devices)
    except ValueError as exc:
        return _fail(str(exc))
    if not 0.0 <= args.spot_check_share <= 1.0:
        return _fail("--spot-check-share must be between 0 and 1")
    metrics_address = None
    if args.metrics is not None:
        from network.metrics import parse_address

        try:
            metrics_address = parse_address(args.metrics)
        except ValueError as exc:
            return _fail(str(exc))
    data_dir = args.data_dir or default_data_dir()
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

    config = NodeConfig(
        data_dir=Path(data_dir),
        params=params,
        ipfs_kind=args.ipfs,
        api_addr=args.api,
        listen=tuple(args.listen) if args.listen else NodeConfig.__dataclass_fields__["listen"].default,
        peers=tuple(args.peer),
        bootstrap=() if args.no_bootstrap else NodeConfig.__dataclass_fields__["bootstrap"].default,
        claim_ttl_s=args.claim_ttl,
        spot_check_share=args.spot_check_share,
        head_interval_s=args.head_interval,
        reannounce_interval_s=args.reannounce_interval,
        unit_limit=args.unit_limit,
    )
    node = Node(config, profile, node_key)
    # A stop asked for while the node starts (seconds) is honoured once it has started.
    stop_asked: list[int] = []
    old = {s: signal.signal(s, lambda signum, _f: stop_asked.append(signum)) for s in STOP_SIGNALS}
    try:
        node.start()
    except (IpfsError, LedgerError, OSError) as exc:
        node.stop()
        _restore(old)
        return _fail(f"cannot start the node: {exc}", FAILED)
    except BaseException:
        node.stop()
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

    cores = args.cores or max(1, os.cpu_count() or 1)
    runner = NodeRunner(
        node,
        backend=args.backend,
        gpu_devices=gpu_devices,
        cores=cores,
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
             status.peer_id, params.name, args.backend, cores)
    try:
        runner.run()
    finally:
        if metrics is not None:
            metrics.close()
        node.stop()
        _restore(old)
        log.info("node stopped; unit checkpoints kept")
        if tty:
            print(file=sys.stderr)
    return 0


def _restore(old: dict) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)
