"""Accounts and node keys, and the profile directory that holds them.

An *account* key (Ed25519) identifies a person; each machine has its own
*node* key, which signs work. The account signs a DelegationRecord that
authorises the node key, and another one with revoked=True to withdraw it.

Profile layout under `data_dir` (docs/PROTOCOL.md, "Profile directory"):

    account.key    account key, passphrase-encrypted (network/keystore.py), 0600
    node.key       node key, encrypted with node.secret, 0600
    node.secret    32 random bytes, 0600: lets the node restart unattended
    profile.json   {"version": 1, "username", "account", "node", "account_record"}
    records/<CID>  this profile's own signed records (account, delegations)

Threat model of node.secret: it protects node.key copied on its own (backups,
file sync, a stray upload), not against malware running as the same user,
which could read both files. That is acceptable because a node key only signs
work, and the account can revoke it; the account key, which owns the name and
the credit, stays under the passphrase.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from network import codec, keystore
from network.keystore import KdfLimits, KeystoreError
from network.records import AccountRecord, DelegationRecord, SignedRecord
from network.rejection import Rejection
from network.usernames import UsernameError, normalize

ACCOUNT_FILE = "account.key"
NODE_FILE = "node.key"
NODE_SECRET_FILE = "node.secret"
PROFILE_FILE = "profile.json"
RECORDS_DIR = "records"
PROFILE_VERSION = 1


def default_data_dir() -> Path:
    """The default profile directory, shared with the desktop app (network/profile_dir.py)."""
    from network.profile_dir import default_data_dir as shared

    return shared()


def new_key() -> SigningKey:
    """A fresh random Ed25519 key."""
    return SigningKey.generate()


def hex_keys(values: Iterable[str], what: str) -> frozenset[bytes]:
    """Public keys given as 64 hex digits each (a setting's list), as a set.

    Raises:
        ValueError: a value that is not 64 hex digits, naming `what` kind of key.
    """
    out = set()
    for v in values:
        try:
            key = bytes.fromhex(v.strip())
        except ValueError:
            key = b""
        if len(key) != 32:
            raise ValueError(f"{what} key {v.strip()[:70]!r} is not 64 hex digits")
        out.add(key)
    return frozenset(out)


def delegate(account_key: SigningKey, node: bytes, created: int) -> SignedRecord:
    """A signed delegation from `account_key` to the node public key `node`."""
    record = DelegationRecord(account=bytes(account_key.verify_key), node=node, created=created)
    return codec.sign(record, account_key)


def revoke(account_key: SigningKey, node: bytes, created: int) -> SignedRecord:
    """A signed revocation of `node` by `account_key`, effective from `created`."""
    record = DelegationRecord(
        account=bytes(account_key.verify_key), node=node, created=created, revoked=True
    )
    return codec.sign(record, account_key)


def account_record(account_key: SigningKey, username: str, created: int) -> SignedRecord:
    """A signed account record claiming `username` (raises UsernameError if invalid)."""
    normalize(username)
    record = AccountRecord(
        account=bytes(account_key.verify_key), username=username, created=created
    )
    return codec.sign(record, account_key)


@dataclass(frozen=True, slots=True)
class Created:
    """What creating or importing an account produced."""

    account: bytes
    node: bytes
    account_record: SignedRecord
    delegation: SignedRecord


def _now() -> int:
    return int(time.time())


class Profile:
    """One profile directory: keys, profile.json and local records.

    Methods raise KeystoreError (with a stable `code`) when an operation fails.
    """

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir)

    @property
    def account_path(self) -> Path:
        return self.data_dir / ACCOUNT_FILE

    @property
    def node_path(self) -> Path:
        return self.data_dir / NODE_FILE

    @property
    def secret_path(self) -> Path:
        return self.data_dir / NODE_SECRET_FILE

    @property
    def profile_path(self) -> Path:
        return self.data_dir / PROFILE_FILE

    @property
    def records_dir(self) -> Path:
        return self.data_dir / RECORDS_DIR

    def has_account(self) -> bool:
        return self.account_path.exists()

    def _require_account(self) -> None:
        if not self.has_account():
            raise KeystoreError(
                "not_found",
                f"no account in {self.data_dir}; run 'account create' or 'account import' first",
            )

    # -- profile.json -------------------------------------------------------

    def info(self) -> dict:
        """profile.json as a dict ({} when absent or unreadable)."""
        try:
            doc = json.loads(self.profile_path.read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_info(self, **changes: object) -> None:
        doc = self.info()
        doc.update(changes, version=PROFILE_VERSION)
        data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")
        keystore.write_atomic(self.profile_path, data, mode=0o600)

    # -- keys ---------------------------------------------------------------

    def account_public_key(self) -> bytes:
        """The account public key, read without the passphrase."""
        self._require_account()
        return keystore.parse_key_file(keystore.read_file(self.account_path)).public_key

    def unlock_account(self, passphrase: str | bytes) -> SigningKey:
        """The account signing key (raises KeystoreError wrong_passphrase)."""
        self._require_account()
        key, _ = keystore.open_with_passphrase(
            keystore.read_file(self.account_path), passphrase, "account"
        )
        return key

    def node_key(self) -> SigningKey:
        """This machine's node key, unlocked with node.secret (no prompt)."""
        secret = keystore.read_file(self.secret_path)
        return keystore.open_with_secret(keystore.read_file(self.node_path), secret)

    def ensure_node_key(self) -> SigningKey:
        """The node key, created with a fresh node.secret if there is none."""
        if self.node_path.exists():
            return self.node_key()
        return self._new_node_key()

    def _new_node_key(self) -> SigningKey:
        # Secret first: a crash between the two writes leaves a secret with no
        # key (harmless, replaced next time), never a key nothing can open.
        key = new_key()
        secret = keystore.new_secret()
        blob = keystore.seal_with_secret(key, "node", secret)
        keystore.write_atomic(self.secret_path, secret)
        keystore.write_atomic(self.node_path, blob)
        return key

    # -- records ------------------------------------------------------------

    def store_record(self, signed: SignedRecord) -> str:
        """Save a signed record under records/<CID>; returns the CID."""
        data = codec.encode(signed)
        cid = codec.record_cid(data)
        keystore.write_atomic(self.records_dir / cid, data, mode=0o644)
        return cid

    def record_path(self, cid: str) -> Path | None:
        """Where records/<cid> is, if this profile has it."""
        if not cid.isalnum():
            return None
        path = self.records_dir / cid
        return path if path.is_file() else None

    def local_records(self) -> list[SignedRecord]:
        """Every readable, well-formed record in records/ (others are skipped)."""
        out = []
        if not self.records_dir.is_dir():
            return out
        for path in sorted(self.records_dir.iterdir()):
            if path.name.startswith("."):
                continue
            try:
                parsed = codec.parse(path.read_bytes())
            except OSError:
                continue
            if not isinstance(parsed, Rejection):
                out.append(parsed)
        return out

    def delegations(self) -> list[DelegationRecord]:
        return [s.record for s in self.local_records() if isinstance(s.record, DelegationRecord)]

    # -- operations ---------------------------------------------------------

    def create(
        self,
        username: str,
        passphrase: str | bytes,
        *,
        now: int | None = None,
        limits: KdfLimits = keystore.DEFAULT_LIMITS,
    ) -> Created:
        """Create the account key, a node key, the account record and the delegation.

        Raises:
            KeystoreError: exists (there is an account already), weak_passphrase,
                bad_username.
        """
        if self.has_account():
            raise KeystoreError("exists", f"{self.data_dir} already has an account")
        created = _now() if now is None else now
        key = new_key()
        try:
            record = account_record(key, username, created)
        except UsernameError as exc:
            raise KeystoreError("bad_username", str(exc)) from None
        blob = keystore.seal_with_passphrase(
            key, "account", passphrase, limits, [codec.encode(record)]
        )
        return self._install_account(key, blob, record, created)

    def _install_account(
        self, key: SigningKey, blob: bytes, record: SignedRecord, created: int
    ) -> Created:
        node_key = self.ensure_node_key()
        node = bytes(node_key.verify_key)
        delegation = delegate(key, node, created)
        keystore.write_atomic(self.account_path, blob)
        account_cid = self.store_record(record)
        self.store_record(delegation)
        self._write_info(
            username=record.record.username,
            account=bytes(key.verify_key).hex(),
            node=node.hex(),
            account_record=account_cid,
        )
        return Created(bytes(key.verify_key), node, record, delegation)

    def export_account(
        self,
        passphrase: str | bytes,
        out: Path,
        *,
        new_passphrase: str | bytes | None = None,
        limits: KdfLimits | None = None,
    ) -> None:
        """Write the account key, with its account record, to `out` (0600).

        The export is encrypted under `new_passphrase` if given, else under
        the current passphrase.
        """
        self._require_account()
        key, kf = keystore.open_with_passphrase(
            keystore.read_file(self.account_path), passphrase, "account"
        )
        data = keystore.seal_with_passphrase(
            key,
            "account",
            new_passphrase if new_passphrase is not None else passphrase,
            limits or kf.limits or keystore.DEFAULT_LIMITS,
            list(kf.records),
        )
        keystore.write_atomic(Path(out), data)

    def import_account(
        self,
        source: Path,
        passphrase: str | bytes,
        *,
        username: str | None = None,
        now: int | None = None,
    ) -> Created:
        """Install an exported account key here, with a delegation for this node.

        The account record travels inside the export; `username` is only used
        (and then required) when the file carries none.

        Raises:
            KeystoreError: exists, not_found, wrong_passphrase, corrupt, bad_username.
        """
        if self.has_account():
            raise KeystoreError("exists", f"{self.data_dir} already has an account")
        blob = keystore.read_file(Path(source))
        key, kf = keystore.open_with_passphrase(blob, passphrase, "account")
        created = _now() if now is None else now
        record = None
        for raw in kf.records:
            parsed = codec.parse(raw)
            if (
                isinstance(parsed, SignedRecord)
                and isinstance(parsed.record, AccountRecord)
                and parsed.signer == kf.public_key
            ):
                record = parsed
        if record is None:
            if username is None:
                raise KeystoreError(
                    "bad_username", "the file has no account record; give --username"
                )
            try:
                record = account_record(key, username, created)
            except UsernameError as exc:
                raise KeystoreError("bad_username", str(exc)) from None
            blob = keystore.seal_with_passphrase(
                key, "account", passphrase, kf.limits, [codec.encode(record)]
            )
        return self._install_account(key, blob, record, created)

    def change_passphrase(
        self, old: str | bytes, new: str | bytes, limits: KdfLimits | None = None
    ) -> None:
        """Re-encrypt account.key under `new` (atomic; untouched on error)."""
        self._require_account()
        keystore.change_passphrase(self.account_path, old, new, limits)

    def reauthorize_node(self, passphrase: str | bytes, *, now: int | None = None) -> SigningKey:
        """A fresh node key for this machine when the old one cannot be opened.

        The old key (node.secret lost or damaged) is revoked, so whoever holds its
        secret can no longer sign for the account; the new key is delegated. Needs
        the account passphrase (raises KeystoreError wrong_passphrase).
        """
        account_key = self.unlock_account(passphrase)
        created = _now() if now is None else now
        try:
            old = keystore.parse_key_file(keystore.read_file(self.node_path)).public_key
        except (KeystoreError, OSError):
            old = None  # no readable key file: nothing to revoke
        if old is not None:
            self.store_record(revoke(account_key, old, created))
        fresh = self._new_node_key()
        node = bytes(fresh.verify_key)
        self.store_record(delegate(account_key, node, created))
        self._write_info(node=node.hex())
        return fresh

    def revoke_node(
        self, passphrase: str | bytes, node: bytes | None = None, *, now: int | None = None
    ) -> tuple[SignedRecord, SignedRecord | None]:
        """Revoke `node` (default: this machine's node key).

        Revoking this machine's own key also makes a fresh node key and
        delegates it, so the node can keep working.

        Returns:
            The revocation, and the new delegation (None for another machine's key).
        """
        key = self.unlock_account(passphrase)
        created = _now() if now is None else now
        own = bytes(self.node_key().verify_key) if self.node_path.exists() else None
        target = own if node is None else node
        if target is None:
            raise KeystoreError("not_found", "this profile has no node key to revoke")
        revocation = revoke(key, target, created)
        self.store_record(revocation)
        replacement = None
        if target == own:
            fresh = bytes(self._new_node_key().verify_key)
            replacement = delegate(key, fresh, created)
            self.store_record(replacement)
            self._write_info(node=fresh.hex())
        return revocation, replacement
