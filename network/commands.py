"""Command-line interface for accounts and records.

Registers `account create|show|export|import|passphrase|revoke-node` and
`records show CID|FILE` on the program's argparse sub-parsers. Every prompt
has a flag for scripts (--passphrase-file, --new-passphrase-file,
--username); --data-dir picks the profile directory. Errors are one line on
stderr with exit status 2 (bad usage or input) or 1 (the operation failed,
e.g. a wrong passphrase); `records show` exits 1 when the record is rejected.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from engine.params import Params
from network import codec, keystore
from network.identity import Profile, default_data_dir
from network.keystore import KeystoreError
from network.records import DelegationRecord, WorkRecord
from network.rejection import Rejection
from network.validate import context, validate

PROG_ERROR = "hailstone: error:"


class UsageError(Exception):
    """Bad input from the user: exit status 2."""


def _data_dir_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="profile directory (default: the user data directory for hailstone)",
    )
    return parent


def _add_passphrase_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--passphrase-file",
        type=Path,
        metavar="FILE",
        help="read the passphrase from FILE (one trailing newline is ignored) instead of asking",
    )


def _add_new_passphrase_file(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--new-passphrase-file",
        type=Path,
        metavar="FILE",
        help="read the new passphrase from FILE instead of asking",
    )


def _add_kdf(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kdf-strength",
        choices=sorted(keystore.LIMITS_BY_NAME),
        default=None,
        help="Argon2id cost for the new encryption (default moderate; 'min' is for tests only)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `account` and `records` sub-commands to the program's parser."""
    parent = _data_dir_parent()

    account = subparsers.add_parser("account", help="create, show, export or import your account")
    acc = account.add_subparsers(dest="account_command", metavar="ACTION", required=True)

    p = acc.add_parser("create", parents=[parent], help="create an account and this node's key")
    p.add_argument("--username", metavar="NAME", help="username to claim (asked if missing)")
    _add_passphrase_file(p)
    _add_kdf(p)
    p.set_defaults(func=_run(_create))

    p = acc.add_parser("show", parents=[parent], help="show the account, node and username")
    p.set_defaults(func=_run(_show))

    p = acc.add_parser("export", parents=[parent], help="write the account key to a file")
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    _add_passphrase_file(p)
    _add_new_passphrase_file(p)
    _add_kdf(p)
    p.set_defaults(func=_run(_export))

    p = acc.add_parser("import", parents=[parent], help="use an exported account on this machine")
    p.add_argument("file", type=Path, metavar="FILE", help="an exported account key")
    p.add_argument("--username", metavar="NAME", help="only for files without an account record")
    _add_passphrase_file(p)
    p.set_defaults(func=_run(_import))

    p = acc.add_parser("passphrase", parents=[parent], help="change the account passphrase")
    _add_passphrase_file(p)
    _add_new_passphrase_file(p)
    _add_kdf(p)
    p.set_defaults(func=_run(_passphrase_cmd))

    p = acc.add_parser(
        "revoke-node", parents=[parent], help="withdraw a node key's right to work for you"
    )
    p.add_argument(
        "node", nargs="?", metavar="NODE_KEY", help="node public key in hex (default: this node's)"
    )
    _add_passphrase_file(p)
    p.set_defaults(func=_run(_revoke))

    records = subparsers.add_parser("records", help="inspect signed records")
    rec = records.add_subparsers(dest="records_command", metavar="ACTION", required=True)
    p = rec.add_parser("show", parents=[parent], help="print a record and its validation verdict")
    p.add_argument("what", metavar="CID|FILE", help="a record file, or a CID in the local store")
    p.set_defaults(func=_run(_records_show))


def _run(handler):
    """Wrap a handler: errors become one stderr line and an exit status."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"{PROG_ERROR} {exc}", file=sys.stderr)
            return 2
        except KeystoreError as exc:
            print(f"{PROG_ERROR} {exc.message}", file=sys.stderr)
            return 2 if exc.code in ("bad_username", "weak_passphrase") else 1
        except OSError as exc:
            print(f"{PROG_ERROR} {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"{PROG_ERROR} interrupted; nothing was changed", file=sys.stderr)
            return 1

    return run


def _profile(args: argparse.Namespace) -> Profile:
    return Profile(args.data_dir if args.data_dir is not None else default_data_dir())


def _read_secret_file(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if raw.endswith(b"\r\n"):
        raw = raw[:-2]
    elif raw.endswith(b"\n"):
        raw = raw[:-1]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None


def _ask(prompt: str, flag: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"no terminal to ask on; use {flag}")
    return getpass.getpass(prompt)


def _passphrase(args: argparse.Namespace, prompt: str = "Passphrase: ") -> str:
    if args.passphrase_file is not None:
        return _read_secret_file(args.passphrase_file)
    return _ask(prompt, "--passphrase-file")


def _new_passphrase(path: Path | None, flag: str) -> str:
    if path is not None:
        return _read_secret_file(path)
    first = _ask("New passphrase: ", flag)
    if _ask("Repeat it: ", flag) != first:
        raise UsageError("the passphrases differ; nothing was changed")
    return first


def _limits(args: argparse.Namespace) -> keystore.KdfLimits | None:
    name = getattr(args, "kdf_strength", None)
    return keystore.LIMITS_BY_NAME[name] if name else None


def _create(args: argparse.Namespace) -> int:
    profile = _profile(args)
    if profile.has_account():
        raise KeystoreError("exists", f"{profile.data_dir} already has an account")
    username = args.username
    if username is None:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to ask on; use --username")
        username = input("Username: ")
    if args.passphrase_file is not None:
        passphrase = _read_secret_file(args.passphrase_file)
    else:
        passphrase = _new_passphrase(None, "--passphrase-file")
    created = profile.create(username, passphrase, limits=_limits(args) or keystore.DEFAULT_LIMITS)
    print(f"account  {created.account.hex()}")
    print(f"node     {created.node.hex()}")
    print(f"username {created.account_record.record.username}")
    print(f"profile  {profile.data_dir}")
    return 0


def _show(args: argparse.Namespace) -> int:
    profile = _profile(args)
    account = profile.account_public_key()
    info = profile.info()
    node = profile.node_key().verify_key if profile.node_path.exists() else None
    print(f"account  {account.hex()}")
    print(f"node     {bytes(node).hex() if node is not None else '(none)'}")
    print(f"username {info.get('username', '(unknown)')}")
    print(f"profile  {profile.data_dir}")
    return 0


def _export(args: argparse.Namespace) -> int:
    profile = _profile(args)
    passphrase = _passphrase(args)
    new = None
    if args.new_passphrase_file is not None:
        new = _read_secret_file(args.new_passphrase_file)
    profile.export_account(passphrase, args.out, new_passphrase=new, limits=_limits(args))
    print(f"exported the account key to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    profile = _profile(args)
    if profile.has_account():
        raise KeystoreError("exists", f"{profile.data_dir} already has an account")
    passphrase = _passphrase(args)
    created = profile.import_account(args.file, passphrase, username=args.username)
    print(f"account  {created.account.hex()}")
    print(f"node     {created.node.hex()}")
    print(f"username {created.account_record.record.username}")
    return 0


def _passphrase_cmd(args: argparse.Namespace) -> int:
    profile = _profile(args)
    old = _passphrase(args, "Current passphrase: ")
    new = _new_passphrase(args.new_passphrase_file, "--new-passphrase-file")
    profile.change_passphrase(old, new, _limits(args))
    print("passphrase changed")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    profile = _profile(args)
    node = None
    if args.node is not None:
        try:
            node = bytes.fromhex(args.node)
        except ValueError:
            node = b""
        if len(node) != 32:
            raise UsageError("NODE_KEY must be 64 hex digits")
    revocation, replacement = profile.revoke_node(_passphrase(args), node)
    print(f"revoked  {revocation.record.node.hex()} ({codec.record_cid(revocation)})")
    if replacement is not None:
        print(f"new node {replacement.record.node.hex()} ({codec.record_cid(replacement)})")
    return 0


def _format_value(value: object) -> str:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Params):
        return (
            f"{value.name} v{value.version} start={value.start} unit_bits={value.unit_bits} "
            f"block_bits={value.block_bits} sieve_k={value.sieve_k} "
            f"step_bound={value.step_bound} exact_step_bound={value.exact_step_bound}"
        )
    if isinstance(value, tuple):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class _LedgerView:
    records: dict[str, bytes]
    delegations: tuple[DelegationRecord, ...]
    works: dict[str, WorkRecord]


def _ledger_view(profile: Profile) -> _LedgerView:
    """What the profile's network ledger holds (empty when there is none; never creates one)."""
    from network.ledger import LEDGER_FILENAME, Ledger, LedgerError

    path = profile.data_dir / LEDGER_FILENAME
    if not path.is_file():
        return _LedgerView({}, (), {})
    try:
        with Ledger(path) as ledger:
            rows = ledger.records()
    except LedgerError:
        return _LedgerView({}, (), {})
    records = {r.cid: r.data for r in rows}
    parsed = {cid: codec.parse(data) for cid, data in records.items()}
    delegations = tuple(
        p.record for p in parsed.values() if not isinstance(p, Rejection) and isinstance(p.record, DelegationRecord)
    )
    works = {
        cid: p.record for cid, p in parsed.items() if not isinstance(p, Rejection) and isinstance(p.record, WorkRecord)
    }
    return _LedgerView(records, delegations, works)


def _records_show(args: argparse.Namespace) -> int:
    what = args.what
    path = Path(what)
    profile = _profile(args)
    known = _ledger_view(profile)
    if path.is_file():
        data = path.read_bytes()
    elif profile.record_path(what) is not None:
        data = profile.record_path(what).read_bytes()
    elif what in known.records:
        data = known.records[what]
    else:
        print(
            f"{PROG_ERROR} {what} is neither a file nor a record in {profile.records_dir} "
            f"or in this profile's ledger",
            file=sys.stderr,
        )
        return 1
    parsed = codec.parse(data)
    print(f"cid       {codec.record_cid(data)}")
    if isinstance(parsed, Rejection):
        print(f"verdict   rejected ({parsed.reason_code}): {parsed.message}")
        return 1
    print(f"kind      {parsed.kind}")
    print(f"signer    {parsed.signer.hex()}")
    print(f"signature {parsed.signature.hex()}")
    for name in codec.SCHEMAS[parsed.kind]:
        print(f"  {name:<16} {_format_value(getattr(parsed.record, name))}")
    delegations = {*profile.delegations(), *known.delegations}
    verdict = validate(parsed, context(int(time.time()), delegations, works=known.works))
    if isinstance(verdict, Rejection):
        print(f"verdict   rejected ({verdict.reason_code}): {verdict.message}")
        return 1
    print("verdict   accepted")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the account/records commands alone (python -m network.commands ...)."""
    parser = argparse.ArgumentParser(prog="hailstone")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
