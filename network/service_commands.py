"""Sub-commands for running Hailstone as a service: doctor, backup, restore, service."""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from engine import by_name
from network import doctor as dr
from network import systemd
from network.backup import BackupError, create_backup, restore_backup
from network.identity import default_data_dir
from network.ipfs.embedded import DEFAULT_BOOTSTRAP, PUBLIC_LISTEN

USAGE_ERROR = 2
FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor",
        help="check that this machine and profile can run a node, and say what to fix",
        description="Checks Python and packages, CPU, GPU and NVRTC, the sieve cache, the "
        "profile (space, permissions, keys), the ledger's integrity, the embedded IPFS node, "
        "the listen port, the peers and the clock. Exit status 0 when nothing failed, 1 "
        "otherwise. With --health, only whether the running node's status file is fresh.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="profile directory")
    p.add_argument("--params", default="production", help="parameter set: production or dev")
    p.add_argument("--listen", action="append", metavar="MULTIADDR",
                   help="the node's listen address (repeatable; default: port 4001)")
    p.add_argument("--peer", action="append", default=[], metavar="MULTIADDR",
                   help="a peer the node connects to (repeatable)")
    p.add_argument("--no-bootstrap", action="store_true", help="do not try the public bootstrap peers")
    p.add_argument("--backend", default="cpu", choices=("cpu", "gpu"),
                   help="gpu: a missing GPU fails instead of warning")
    p.add_argument("--ipfs", default="embedded", choices=("embedded", "rpc"), help="IPFS backend")
    p.add_argument("--api", default=None, metavar="MULTIADDR", help="kubo RPC API (with --ipfs rpc)")
    p.add_argument("--min-free-mb", type=int, default=dr.DEFAULT_MIN_FREE_MB,
                   help="free space the profile's disk must have (MiB)")
    p.add_argument("--health", action="store_true",
                   help="only check that the node's --status-file is fresh (for health checks)")
    p.add_argument("--status-file", type=Path, default=None,
                   help="the running node's status file: also check that it is alive")
    p.add_argument("--max-age", type=float, default=60.0, help="seconds (--health)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=cmd_doctor)

    p = subparsers.add_parser(
        "backup", help="write the whole profile to one file (safe while the node runs)",
        description="Keys (still encrypted), the ledger (SQLite online backup), settings, "
        "checkpoints and own records, in one .tar.gz with a checksum for every file.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="profile directory")
    p.add_argument("--out", type=Path, required=True, help="the backup file to write")
    p.set_defaults(func=cmd_backup)

    p = subparsers.add_parser(
        "restore", help="unpack a backup as a new profile",
        description="Checks the whole file first, then unpacks it into --data-dir, which must "
        "be empty or missing. Run a restored profile in place of the old one, not beside it.",
    )
    p.add_argument("file", type=Path, help="a file written by 'backup'")
    p.add_argument("--data-dir", type=Path, default=None, help="profile directory to create")
    p.set_defaults(func=cmd_restore)

    p = subparsers.add_parser("service", help="install the node as a systemd service")
    sub = p.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    for name, helptext in (("install", "write the unit and reload systemd"),
                           ("print", "print the unit file"),
                           ("uninstall", "stop, disable and remove the unit")):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--user", action="store_true",
                       help="a user unit (your own profile) instead of the system unit")
        if name != "uninstall":
            q.add_argument("--data-dir", default=None,
                           help="profile (user unit; the system unit uses /var/lib/hailstone)")
            q.add_argument("--backend", default="cpu", choices=("cpu", "gpu"))
            q.add_argument("--metrics", default="127.0.0.1:9464", metavar="[HOST:]PORT",
                           help="metrics address (default 127.0.0.1:9464)")
            q.add_argument("--no-metrics", action="store_true", help="no metrics endpoint")
            q.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                           help="one more argument for 'node' (repeatable), e.g. --node-arg=--cores=4")
            q.add_argument("--command", dest="unit_command", default=None, metavar="PROGRAM",
                           help="what the unit runs instead of this Hailstone (packagers: "
                           "/opt/hailstone/hailstone)")
        if name != "print":
            q.add_argument("--root", type=Path, default=None,
                           help="write under this folder instead of / and leave systemctl and "
                           "users alone (packagers, tests)")
        q.set_defaults(func=cmd_service)


def _fail(message: str, code: int = FAILED) -> int:
    print(f"hailstone: {message}", file=sys.stderr)
    return code


# --- doctor --------------------------------------------------------------------------


def _print_check(ch: dr.Check) -> None:
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}[ch.status]
    print(f"{mark}  {ch.name:<12} {ch.summary}")
    if ch.fix:
        print(f"      {'':<12} what to do: {ch.fix}")


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.health:
        if args.status_file is None:
            return _fail("--health needs --status-file", USAGE_ERROR)
        checks = [dr.health(args.status_file, args.max_age)]
    else:
        try:
            params = by_name(args.params)
        except ValueError as exc:
            return _fail(str(exc), USAGE_ERROR)
        config = dr.DoctorConfig(
            data_dir=Path(args.data_dir or default_data_dir()),
            params=params,
            listen=tuple(args.listen) if args.listen else PUBLIC_LISTEN,
            peers=tuple(args.peer),
            bootstrap=() if args.no_bootstrap else DEFAULT_BOOTSTRAP,
            backend=args.backend,
            ipfs_kind=args.ipfs,
            api_addr=args.api,
            min_free_mb=args.min_free_mb,
        )
        checks = []
        extra = [lambda: dr.health(args.status_file, args.max_age)] if args.status_file else []
        # one at a time, each printed as soon as it is known (the IPFS check takes seconds)
        for ch in itertools.chain(dr.run_checks(config), (f() for f in extra)):
            checks.append(ch)
            if not args.json:
                _print_check(ch)
                sys.stdout.flush()
    doc = dr.to_json(checks)
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.health:
        _print_check(checks[0])
    else:
        failed = [c.name for c in checks if c.status == dr.FAIL]
        print("\nall checks passed" if not failed else f"\nfailed: {', '.join(failed)}")
    return 0 if doc["ok"] else FAILED


# --- backup and restore --------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or default_data_dir()
    try:
        s = create_backup(data_dir, args.out)
    except BackupError as exc:
        return _fail(str(exc))
    print(f"backed up {s.files} files ({s.bytes / 2**20:.1f} MiB) of {data_dir} to {s.path}")
    print("the account key inside is still encrypted with your passphrase; node.secret is not: "
          "keep the file private")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    data_dir = args.data_dir or default_data_dir()
    try:
        s = restore_backup(args.file, data_dir)
    except BackupError as exc:
        return _fail(str(exc))
    print(f"restored {s.files} files into {data_dir}")
    print("start the node there; it resumes its checkpoints. Do not also run the old copy: "
          "both would sign with the same node key")
    return 0


# --- service -------------------------------------------------------------------------


def cmd_service(args: argparse.Namespace) -> int:
    if args.service_command == "uninstall":
        return _uninstall(args)
    if args.user:
        data_dir = args.data_dir or str(default_data_dir())
    else:
        if args.data_dir:
            return _fail("the system unit keeps its profile in /var/lib/hailstone "
                         "(StateDirectory); --data-dir is for --user", USAGE_ERROR)
        data_dir = None
    options = systemd.UnitOptions(
        command=tuple(args.unit_command.split()) if args.unit_command else systemd.this_command(),
        user=args.user,
        data_dir=data_dir,
        backend=args.backend,
        metrics=None if args.no_metrics else args.metrics,
        extra=tuple(args.node_arg),
    )
    text = systemd.render_unit(options)
    if args.service_command == "print":
        print(text, end="")
        return 0
    root = args.root
    if not args.user and root is None and os.geteuid() != 0:
        return _fail("installing the system unit needs root: run it with sudo, or add --user")
    path = (systemd.unit_path(True, home=root) if args.user and root is not None
            else systemd.unit_path(args.user, root=root or Path("/")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    if root is not None:
        return 0
    steps = []
    if not args.user:
        _ensure_system_user()
        state = Path("/var/lib/hailstone")
        if not state.exists():
            state.mkdir(mode=0o700, parents=True)
            shutil.chown(state, systemd.SYSTEM_USER, systemd.SYSTEM_USER)
        exe = Path(options.command[-1])
        steps.append(f"make sure the {systemd.SYSTEM_USER} user can read {exe} (a venv under "
                     "/opt, or the release build in /opt/hailstone)")
        steps.append(f"sudo -u {systemd.SYSTEM_USER} {' '.join(options.command)} account create "
                     f"--data-dir {state}   (or: restore BACKUP --data-dir {state})")
    ctl = ["systemctl"] + (["--user"] if args.user else [])
    if shutil.which("systemctl"):
        subprocess.run([*ctl, "daemon-reload"], check=False)
    steps.append(" ".join([*ctl, "enable", "--now", "hailstone"]))
    steps.append(f"journalctl {'--user ' if args.user else ''}-u hailstone -f     (the logs)")
    if args.user:
        steps.append("loginctl enable-linger $USER   (keep it running after you log out)")
    print("next:\n" + "\n".join(f"  {s}" for s in steps))
    return 0


def _ensure_system_user() -> None:
    import pwd  # Unix only; the system unit is for Linux

    try:
        pwd.getpwnam(systemd.SYSTEM_USER)
        return
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/hailstone",
         "--no-create-home", "--shell", "/usr/sbin/nologin", systemd.SYSTEM_USER],
        check=True,
    )
    print(f"created the system user {systemd.SYSTEM_USER}")


def _uninstall(args: argparse.Namespace) -> int:
    root = args.root
    path = (systemd.unit_path(True, home=root) if args.user and root is not None
            else systemd.unit_path(args.user, root=root or Path("/")))
    ctl = ["systemctl"] + (["--user"] if args.user else [])
    if root is None and shutil.which("systemctl"):
        subprocess.run([*ctl, "disable", "--now", "hailstone"], check=False)
    if path.exists():
        path.unlink()
        print(f"removed {path}")
    else:
        print(f"{path} was not there")
    if root is None and shutil.which("systemctl"):
        subprocess.run([*ctl, "daemon-reload"], check=False)
    print("the profile stays where it is (it holds your keys)")
    return 0
