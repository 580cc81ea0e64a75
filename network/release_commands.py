"""The `release` sub-command: a maintainer's release key and signed release records.

    main.py release keygen --out KEY --passphrase-file P   # prints the public key
    main.py release sign --key KEY --passphrase-file P --version 0.2 --date 2026-12-01 \\
        --notes https://... [--min-protocol 2] --out release.cbor
    main.py release show release.cbor [--data-dir D]
    main.py release publish release.cbor [--data-dir D]

`publish` checks the record against the profile's `release_keys` setting and puts
it into the profile (release.cbor); the profile's node, running or started later,
gossips it on the network's release topic (network/release.py). Exit status 0 on
success, 1 when a check fails (one line says why), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.files import write_atomic
from engine.params import PROTOCOL_VERSION
from engine.settings import ENGINE_SETTINGS, SETTINGS_FILE, SettingsStore
from network import keystore
from network.identity import default_data_dir
from network.rejection import Rejection
from network.release import (
    RELEASE_FILE,
    ReleaseRecord,
    newer,
    notice_of,
    parse,
    release_keys,
    sign,
)
from network.settings import NETWORK_SETTINGS

FAILED = 1
USAGE_ERROR = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "release",
        help="maintainers: release keys and signed release records (new-version notices)",
        description="Make a release key, sign a release record, check one, or hand one "
        "to this profile's node to gossip (docs/PROTOCOL.md §12).",
    )
    sub = p.add_subparsers(dest="release_command", metavar="ACTION", required=True)
    k = sub.add_parser("keygen", help="make a release key (passphrase-encrypted)")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--passphrase-file", type=Path, required=True)
    k.add_argument("--kdf", choices=tuple(keystore.LIMITS_BY_NAME), default="moderate",
                   help=argparse.SUPPRESS)
    k.set_defaults(func=cmd_keygen)
    s = sub.add_parser("sign", help="sign a release record with a release key")
    s.add_argument("--key", type=Path, required=True, help="the release key file")
    s.add_argument("--passphrase-file", type=Path, required=True)
    s.add_argument("--version", required=True, dest="release_version", help="e.g. 0.2 or 1.4.3")
    s.add_argument("--date", required=True, help="YYYY-MM-DD")
    s.add_argument("--notes", required=True, help="https:// URL or ipfs://CID of the notes")
    s.add_argument("--min-protocol", type=int, default=PROTOCOL_VERSION,
                   help=f"lowest protocol version the release speaks (default {PROTOCOL_VERSION})")
    s.add_argument("--out", type=Path, required=True, help="where the signed bytes go")
    s.set_defaults(func=cmd_sign)
    for name, func, helptext in (
        ("show", cmd_show, "check a signed release record and print it"),
        ("publish", cmd_publish, "hand a signed release record to this profile's node"),
    ):
        q = sub.add_parser(name, help=helptext)
        q.add_argument("file", type=Path)
        q.add_argument("--data-dir", type=Path, default=None, help="profile directory")
        q.set_defaults(func=func)


def _fail(message: str, code: int = FAILED) -> int:
    print(f"hailstone: {message}", file=sys.stderr)
    return code


def _passphrase(path: Path) -> str:
    return path.read_text(encoding="utf-8").rstrip("\n")


def cmd_keygen(args: argparse.Namespace) -> int:
    from nacl.signing import SigningKey

    if args.out.exists():
        return _fail(f"{args.out} exists; choose another file (a key is never overwritten)")
    try:
        key = SigningKey.generate()
        blob = keystore.seal_with_passphrase(
            key, "release", _passphrase(args.passphrase_file), keystore.LIMITS_BY_NAME[args.kdf]
        )
        write_atomic(args.out, blob, mode=0o600)
    except (OSError, keystore.KeystoreError) as exc:
        return _fail(str(exc))
    print(bytes(key.verify_key).hex())
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        record = ReleaseRecord(
            version=args.release_version,
            date=args.date,
            notes=args.notes,
            min_protocol=args.min_protocol,
        )
    except ValueError as exc:
        return _fail(str(exc), USAGE_ERROR)
    try:
        key, _kf = keystore.open_with_passphrase(
            keystore.read_file(args.key), _passphrase(args.passphrase_file), "release"
        )
        data = sign(record, key)
        write_atomic(args.out, data, mode=0o644)
    except (OSError, ValueError, keystore.KeystoreError) as exc:
        return _fail(str(exc))
    print(f"signed release {record.version} ({len(data)} bytes) with key "
          f"{bytes(key.verify_key).hex()} -> {args.out}")
    return 0


def _profile_keys(data_dir: Path) -> frozenset[bytes]:
    store = SettingsStore(
        data_dir / SETTINGS_FILE, ENGINE_SETTINGS + NETWORK_SETTINGS, read_only=True
    )
    return release_keys(store["release_keys"])


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(64 * 1024)


def _signer_of(data: bytes) -> bytes:
    """The key a record names as its signer (b"" when it names none)."""
    import cbor2

    try:
        obj = cbor2.loads(data)
        return bytes(obj[3]) if isinstance(obj, list) and len(obj) == 5 else b""
    except Exception:  # noqa: BLE001 - garbage: parse() says what is wrong with it
        return b""


def cmd_show(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or default_data_dir())
    try:
        data = _read(args.file)
        keys = _profile_keys(data_dir)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    own = parse(data, keys) if keys else None
    if own is None or isinstance(own, Rejection):
        # Not accepted here: still say whether it is well formed and signed by its key.
        check = parse(data, {_signer_of(data)})
        if isinstance(check, Rejection):
            return _fail(f"not a valid release record: {check}")
        why = "release_keys is empty" if not keys else "its key is not in release_keys"
        print(f"release {check.record.version} ({check.record.date}) {check.record.notes}, "
              f"signed by {check.signer.hex()}; this profile would not accept it: {why}")
        return FAILED
    n = notice_of(own.record)
    print(f"release {n.version} ({n.date}) {n.notes}, min protocol {n.min_protocol}, signed by "
          f"{own.signer.hex()}: valid for this profile; "
          + ("newer than this program" if n.newer else "not newer than this program"))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir or default_data_dir())
    try:
        data = _read(args.file)
        keys = _profile_keys(data_dir)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    if not keys:
        return _fail("this profile's release_keys setting is empty; add the release key first")
    signed = parse(data, keys)
    if isinstance(signed, Rejection):
        return _fail(f"not published: {signed}")
    kept_path = data_dir / RELEASE_FILE
    try:
        kept = parse(_read(kept_path), keys) if kept_path.exists() else None
    except OSError:
        kept = None
    if kept is not None and not isinstance(kept, Rejection):
        if not newer(signed.record.version, kept.record.version):
            return _fail(
                f"not published: the profile already holds release {kept.record.version}, "
                "and a release record must be newer than the one kept"
            )
    try:
        write_atomic(kept_path, data, mode=0o644)
    except OSError as exc:
        return _fail(str(exc))
    print(f"release {signed.record.version} handed to the node in {data_dir}: it gossips it "
          "while it runs (or from its next start)")
    return 0
