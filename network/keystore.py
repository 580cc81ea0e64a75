"""Encrypted key files: the only way a private key touches the disk.

A key file is UTF-8 JSON (docs/PROTOCOL.md, "Key files"):

    {"format": "hailstone-key", "version": 1, "kind": "account" | "node",
     "public_key": hex, "kdf": {...}, "box": hex, "records": [hex, ...]}

`box` is nacl.secret.SecretBox (XSalsa20-Poly1305; 24-byte nonce followed by
the ciphertext) of the 32-byte Ed25519 seed. The box key comes from `kdf`:

- {"name": "argon2id", "opslimit": int, "memlimit": int, "salt": hex(16)}:
  Argon2id (libsodium crypto_pwhash, version 1.3) of the UTF-8 passphrase.
  The limits are stored so that old files keep opening when defaults change.
- {"name": "node-secret"}: the 32 raw bytes of the profile's node.secret file.

`records` (optional) carries signed records that belong with the key, e.g. the
account record inside an exported account key. Files are written 0600 and
atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils
from nacl.exceptions import CryptoError
from nacl.signing import SigningKey

from engine import files

FORMAT = "hailstone-key"
FORMAT_VERSION = 1
KINDS = ("account", "node", "release")  # release: a maintainer's key (network/release.py)
SEED_BYTES = 32
SECRET_BYTES = 32
MAX_KEY_FILE_BYTES = 64 * 1024
# nonce, encrypted seed, Poly1305 tag
BOX_BYTES = nacl.secret.SecretBox.NONCE_SIZE + SEED_BYTES + nacl.secret.SecretBox.MACBYTES
MIN_PASSPHRASE_CHARS = 8

# Bounds on limits read from a file: a hostile file must not make us burn
# gigabytes or minutes, and nothing below libsodium's minimums is accepted.
MAX_OPSLIMIT = 16
MAX_MEMLIMIT = 1 << 30


class KeystoreError(Exception):
    """A key file operation failed; `code` is stable, the message says what to do.

    Codes: not_found, exists, wrong_passphrase, corrupt, unsupported,
    weak_passphrase, io.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class KdfLimits:
    """Argon2id cost: operations and memory in bytes."""

    opslimit: int
    memlimit: int


MODERATE = KdfLimits(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)  # ~1 s, 256 MiB
INTERACTIVE = KdfLimits(argon2id.OPSLIMIT_INTERACTIVE, argon2id.MEMLIMIT_INTERACTIVE)  # 64 MiB
MIN = KdfLimits(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)  # tests only: no protection
LIMITS_BY_NAME = {"moderate": MODERATE, "interactive": INTERACTIVE, "min": MIN}
DEFAULT_LIMITS = MODERATE


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` durably with `data`; key material defaults to mode 0600."""
    files.write_atomic(path, data, mode)


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)


def _derive(passphrase: bytes, salt: bytes, limits: KdfLimits) -> bytes:
    return argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase,
        salt,
        opslimit=limits.opslimit,
        memlimit=limits.memlimit,
    )


def _document(kind: str, key: SigningKey, kdf: dict, box_key: bytes, records: list[bytes]) -> bytes:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    box = nacl.secret.SecretBox(box_key).encrypt(bytes(key))
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": kind,
        "public_key": bytes(key.verify_key).hex(),
        "kdf": kdf,
        "box": bytes(box).hex(),
        "records": [r.hex() for r in records],
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def seal_with_passphrase(
    key: SigningKey,
    kind: str,
    passphrase: str | bytes,
    limits: KdfLimits = DEFAULT_LIMITS,
    records: list[bytes] | None = None,
) -> bytes:
    """Key file bytes for `key`, encrypted under `passphrase` with Argon2id."""
    secret = _passphrase_bytes(passphrase)
    if len(secret.decode("utf-8", "replace")) < MIN_PASSPHRASE_CHARS:
        raise KeystoreError(
            "weak_passphrase", f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters"
        )
    salt = nacl.utils.random(argon2id.SALTBYTES)
    kdf = {
        "name": "argon2id",
        "opslimit": limits.opslimit,
        "memlimit": limits.memlimit,
        "salt": salt.hex(),
    }
    return _document(kind, key, kdf, _derive(secret, salt, limits), records or [])


def seal_with_secret(key: SigningKey, kind: str, secret: bytes) -> bytes:
    """Key file bytes for `key`, encrypted under a random 32-byte secret."""
    if len(secret) != SECRET_BYTES:
        raise ValueError("the node secret is 32 bytes")
    return _document(kind, key, {"name": "node-secret"}, secret, [])


@dataclass(frozen=True, slots=True)
class KeyFile:
    """A parsed (still encrypted) key file."""

    kind: str
    public_key: bytes
    kdf: dict
    box: bytes
    records: tuple[bytes, ...]

    @property
    def limits(self) -> KdfLimits | None:
        if self.kdf["name"] != "argon2id":
            return None
        return KdfLimits(self.kdf["opslimit"], self.kdf["memlimit"])


def _corrupt(detail: str) -> KeystoreError:
    return KeystoreError("corrupt", f"the key file is damaged or not a Hailstone key ({detail})")


def parse_key_file(blob: bytes) -> KeyFile:
    """Check a key file's structure (no decryption).

    Raises:
        KeystoreError: corrupt or unsupported.
    """
    if len(blob) > MAX_KEY_FILE_BYTES:
        raise _corrupt("too large")
    try:
        doc = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _corrupt("not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _corrupt("wrong format tag")
    if doc.get("version") != FORMAT_VERSION:
        raise KeystoreError(
            "unsupported",
            f"key file version {doc.get('version')!r} needs a newer Hailstone (this one reads {FORMAT_VERSION})",
        )
    try:
        kind = doc["kind"]
        public_key = bytes.fromhex(doc["public_key"])
        box = bytes.fromhex(doc["box"])
        kdf = doc["kdf"]
        records = tuple(bytes.fromhex(r) for r in doc.get("records", []))
    except (KeyError, TypeError, ValueError):
        raise _corrupt("missing or bad field") from None
    if kind not in KINDS or len(public_key) != 32 or not isinstance(kdf, dict):
        raise _corrupt("bad kind, public key or kdf")
    if len(box) != BOX_BYTES:
        raise _corrupt("bad box length")
    if kdf.get("name") == "argon2id":
        ops, mem, salt = kdf.get("opslimit"), kdf.get("memlimit"), kdf.get("salt")
        if not (
            type(ops) is int
            and type(mem) is int
            and argon2id.OPSLIMIT_MIN <= ops <= MAX_OPSLIMIT
            and argon2id.MEMLIMIT_MIN <= mem <= MAX_MEMLIMIT
            and isinstance(salt, str)
            and len(salt) == 2 * argon2id.SALTBYTES
        ):
            raise _corrupt("bad Argon2id parameters")
        try:
            bytes.fromhex(salt)
        except ValueError:
            raise _corrupt("bad salt") from None
    elif kdf.get("name") != "node-secret":
        raise KeystoreError("unsupported", f"unknown key derivation {kdf.get('name')!r}")
    return KeyFile(kind, public_key, kdf, box, records)


def _open(kf: KeyFile, box_key: bytes, wrong: KeystoreError) -> SigningKey:
    try:
        seed = nacl.secret.SecretBox(box_key).decrypt(kf.box)
    except CryptoError:
        raise wrong from None
    if len(seed) != SEED_BYTES:
        raise _corrupt("bad seed length")
    key = SigningKey(seed)
    if bytes(key.verify_key) != kf.public_key:
        raise _corrupt("public key does not match the private key")
    return key


def open_with_passphrase(
    blob: bytes, passphrase: str | bytes, expect_kind: str | None = None
) -> tuple[SigningKey, KeyFile]:
    """Decrypt a passphrase-protected key file.

    Raises:
        KeystoreError: wrong_passphrase, corrupt or unsupported.
    """
    kf = parse_key_file(blob)
    if expect_kind is not None and kf.kind != expect_kind:
        raise _corrupt(f"holds a {kf.kind} key, expected an {expect_kind} key")
    if kf.limits is None:
        raise _corrupt("this key is not passphrase-protected")
    box_key = _derive(_passphrase_bytes(passphrase), bytes.fromhex(kf.kdf["salt"]), kf.limits)
    wrong = KeystoreError("wrong_passphrase", "wrong passphrase; nothing was changed")
    return _open(kf, box_key, wrong), kf


def open_with_secret(blob: bytes, secret: bytes) -> SigningKey:
    """Decrypt a node key file with the node secret.

    Raises:
        KeystoreError: corrupt (including a secret that does not fit).
    """
    kf = parse_key_file(blob)
    if kf.kdf["name"] != "node-secret":
        raise _corrupt("this key is not sealed with the node secret")
    return _open(kf, secret, _corrupt("node.secret does not open node.key"))


def read_file(path: Path) -> bytes:
    """Bytes of a key or secret file, as a KeystoreError when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeystoreError("not_found", f"{path} does not exist") from None
    except OSError as exc:
        raise KeystoreError("io", f"cannot read {path}: {exc.strerror}") from None


def change_passphrase(
    path: Path, old: str | bytes, new: str | bytes, limits: KdfLimits | None = None
) -> None:
    """Re-encrypt the key file at `path` under `new`, atomically.

    The new file keeps the old file's Argon2id limits unless `limits` is given.
    On any error (wrong `old` passphrase included) the file is untouched.
    """
    blob = read_file(path)
    key, kf = open_with_passphrase(blob, old)
    data = seal_with_passphrase(key, kf.kind, new, limits or kf.limits, list(kf.records))
    write_atomic(Path(path), data)


def new_secret() -> bytes:
    """A fresh random node secret."""
    return nacl.utils.random(SECRET_BYTES)
