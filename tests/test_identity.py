"""Key files, profiles, delegation and revocation, usernames."""

from __future__ import annotations

import json
import os
import stat

import pytest
from nacl.signing import SigningKey

from engine.params import Params
from network import codec, identity, keystore
from network import rejection as R
from network.identity import Profile
from network.keystore import KeystoreError
from network.records import AccountRecord, DelegationRecord, WorkRecord
from network.rejection import Accepted
from network.usernames import Claim, UsernameError, display_name, is_taken, normalize, owners
from network.validate import context, validate

PW = "correct horse battery"
PW2 = "another staple battery"
T = 1_750_000_000
MIN = keystore.MIN


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def profile(tmp_path) -> Profile:
    p = Profile(tmp_path / "profile")
    p.create("Alice", PW, now=T, limits=MIN)
    return p


def test_create_layout_and_modes(profile):
    d = profile.data_dir
    for name in ("account.key", "node.key", "node.secret", "profile.json"):
        assert mode(d / name) == 0o600, name
    assert len((d / "node.secret").read_bytes()) == 32
    info = profile.info()
    assert info["username"] == "Alice" and info["version"] == 1
    account = profile.account_public_key()
    assert info["account"] == account.hex()
    assert info["node"] == bytes(profile.node_key().verify_key).hex()
    kinds = sorted(s.kind for s in profile.local_records())
    assert kinds == ["account", "delegation"]
    # No private key material in clear anywhere in the profile.
    seed = bytes(profile.unlock_account(PW))
    node_seed = bytes(profile.node_key())
    for path in d.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert seed not in blob and seed.hex().encode() not in blob
            assert node_seed not in blob and node_seed.hex().encode() not in blob


def test_key_file_format(profile):
    doc = json.loads(profile.account_path.read_text())
    assert doc["format"] == "hailstone-key" and doc["version"] == 1
    assert doc["kind"] == "account"
    assert doc["kdf"] == {
        "name": "argon2id",
        "opslimit": MIN.opslimit,
        "memlimit": MIN.memlimit,
        "salt": doc["kdf"]["salt"],
    }
    assert len(bytes.fromhex(doc["box"])) == 24 + 32 + 16  # nonce, seed, MAC
    node_doc = json.loads(profile.node_path.read_text())
    assert node_doc["kdf"] == {"name": "node-secret"}


def test_wrong_passphrase_fails_cleanly(profile):
    before = profile.account_path.read_bytes()
    with pytest.raises(KeystoreError) as err:
        profile.unlock_account("not the passphrase")
    assert err.value.code == "wrong_passphrase"
    with pytest.raises(KeystoreError) as err:
        profile.change_passphrase("not the passphrase", PW2)
    assert err.value.code == "wrong_passphrase"
    assert profile.account_path.read_bytes() == before
    assert [p.name for p in profile.data_dir.iterdir() if p.name.startswith(".")] == []


def test_change_passphrase(profile):
    key = bytes(profile.unlock_account(PW))
    profile.change_passphrase(PW, PW2)
    assert mode(profile.account_path) == 0o600
    assert bytes(profile.unlock_account(PW2)) == key
    with pytest.raises(KeystoreError):
        profile.unlock_account(PW)
    with pytest.raises(KeystoreError) as err:
        profile.change_passphrase(PW2, "short")
    assert err.value.code == "weak_passphrase"
    assert bytes(profile.unlock_account(PW2)) == key


def test_corrupt_and_unsupported_files(tmp_path, profile):
    doc = json.loads(profile.account_path.read_text())
    cases = {
        "corrupt": [b"not json", b"{}", json.dumps({**doc, "box": "00"}).encode()],
        "unsupported": [json.dumps({**doc, "version": 2}).encode()],
    }
    huge = {**doc, "kdf": {**doc["kdf"], "memlimit": 1 << 40}}
    cases["corrupt"].append(json.dumps(huge).encode())
    other_pub = {**doc, "public_key": bytes(SigningKey.generate().verify_key).hex()}
    cases["corrupt"].append(json.dumps(other_pub).encode())
    for code, blobs in cases.items():
        for blob in blobs:
            with pytest.raises(KeystoreError) as err:
                keystore.open_with_passphrase(blob, PW)
            assert err.value.code == code, blob[:40]


def test_export_import(tmp_path, profile):
    out = tmp_path / "alice.key"
    profile.export_account(PW, out, new_passphrase=PW2)
    assert mode(out) == 0o600
    other = Profile(tmp_path / "laptop")
    with pytest.raises(KeystoreError) as err:
        other.import_account(out, PW)
    assert err.value.code == "wrong_passphrase"
    assert not other.has_account()
    created = other.import_account(out, PW2, now=T + 5)
    assert created.account == profile.account_public_key()
    # The same account record (same CID), a different node key.
    assert codec.record_cid(created.account_record) == profile.info()["account_record"]
    assert created.node != bytes(profile.node_key().verify_key)
    assert other.info()["username"] == "Alice"
    with pytest.raises(KeystoreError) as err:
        other.import_account(out, PW2)
    assert err.value.code == "exists"


def test_node_key_restarts_unattended(profile):
    first = bytes(profile.node_key())
    again = Profile(profile.data_dir)
    assert bytes(again.ensure_node_key()) == first
    profile.secret_path.write_bytes(os.urandom(32))
    with pytest.raises(KeystoreError) as err:
        profile.node_key()
    assert err.value.code == "corrupt"


def _work(node: bytes, account: bytes, created: int) -> WorkRecord:
    p = Params.custom(name="t", unit_bits=12, block_bits=8, sieve_k=8)
    return WorkRecord(
        params=p, unit=0, root=bytes(32), tested=0, odd_steps=0, max_value=0, max_n=0,
        overflows=0, backend="cpu", compute_ms=0, node=node, account=account, created=created,
    )  # fmt: skip


def test_revoked_node_later_work_is_rejected(profile):
    old_node_key = profile.node_key()
    old_node = bytes(old_node_key.verify_key)
    account = profile.account_public_key()
    revocation, replacement = profile.revoke_node(PW, now=T + 100)
    assert revocation.record.revoked and revocation.record.node == old_node
    new_node = replacement.record.node
    assert bytes(profile.node_key().verify_key) == new_node != old_node
    dels = profile.delegations()
    params = (_work(old_node, account, T).params,)
    # tested=0 is exact only if the unit has no tested numbers; check auth, not arithmetic:
    early = codec.sign(_work(old_node, account, T + 50), old_node_key)
    late = codec.sign(_work(old_node, account, T + 100), old_node_key)
    c = context(T + 200, dels, params)
    assert validate(late, c).reason_code == R.NODE_REVOKED
    assert getattr(validate(early, c), "reason_code", None) != R.NODE_REVOKED
    fresh = codec.sign(_work(new_node, account, T + 150), profile.node_key())
    assert getattr(validate(fresh, c), "reason_code", None) not in (
        R.NODE_REVOKED,
        R.NO_DELEGATION,
    )
    # Only this account's delegations count: a stranger's grant does not help.
    stranger = SigningKey.generate()
    grant = identity.delegate(stranger, old_node, T + 150).record
    assert validate(late, context(T + 200, [grant], params)).reason_code == R.NO_DELEGATION


def test_account_and_delegation_records_validate(profile):
    for s in profile.local_records():
        assert isinstance(validate(s, context(T + 1, profile.delegations())), Accepted)
        assert isinstance(s.record, AccountRecord | DelegationRecord)
    assert validate(profile.local_records()[0], context(T - 601)).reason_code == R.FROM_FUTURE


def test_create_refuses_bad_input_without_writing(tmp_path):
    p = Profile(tmp_path / "p")
    with pytest.raises(KeystoreError) as err:
        p.create("a b", PW, limits=MIN)
    assert err.value.code == "bad_username"
    with pytest.raises(KeystoreError) as err:
        p.create("alice", "short", limits=MIN)
    assert err.value.code == "weak_passphrase"
    assert not p.data_dir.exists() or list(p.data_dir.iterdir()) == []


# -- usernames ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "norm"),
    [("Alice", "alice"), ("ＡＬＩＣＥ", "alice"), ("  bob.smith_1-x ", "bob.smith_1-x"), ("STRASSE", "strasse"), ("Straße", "strasse")],
)  # fmt: skip
def test_normalize(raw, norm):
    assert normalize(raw) == norm


@pytest.mark.parametrize("raw", ["ab", "a" * 33, "al ice", "alicé", "al/ice", "", "x" * 100])
def test_normalize_refuses(raw):
    with pytest.raises(UsernameError):
        normalize(raw)


def test_ownership_rule():
    a, b, c = (bytes([i]) * 32 for i in (1, 2, 3))
    claims = [
        Claim(a, "Alice", 200, "bafkreib"),
        Claim(b, "alice", 100, "bafkreic"),
        Claim(c, "ALICE", 100, "bafkreia"),  # same time as b, smaller CID: wins
        Claim(a, "carol", 50, "bafkreiz"),  # a's older record; its current claim is "alice"
    ]
    own = owners(claims)
    assert own == {"alice": c}
    assert owners(reversed(claims)) == own  # order of arrival does not matter
    assert display_name(c, "Alice", own) == "alice"
    assert display_name(a, "Alice", own) == "alice#" + a.hex()[:4]
    assert is_taken("alice", a, own) and not is_taken("alice", c, own)
    assert not is_taken("dave", a, own)


def test_reauthorize_replaces_an_unopenable_node_key(tmp_path):
    from network.identity import Profile
    from network.keystore import MIN, KeystoreError

    profile = Profile(tmp_path / "p")
    profile.create("restorer", "correct horse battery staple", limits=MIN)
    old = bytes(profile.node_key().verify_key)
    (tmp_path / "p" / "node.secret").write_bytes(b"\x00" * 32)  # damaged
    with pytest.raises(KeystoreError):
        profile.node_key()
    before = (tmp_path / "p" / "node.key").read_bytes()
    with pytest.raises(KeystoreError) as wrong:
        profile.reauthorize_node("not the passphrase")
    assert wrong.value.code == "wrong_passphrase"
    assert (tmp_path / "p" / "node.key").read_bytes() == before  # nothing changed
    fresh = profile.reauthorize_node("correct horse battery staple")
    assert bytes(profile.node_key().verify_key) == bytes(fresh.verify_key) != old
    dels = profile.delegations()
    assert any(d.node == old and d.revoked for d in dels)  # the lost key can no longer sign
    assert any(d.node == bytes(fresh.verify_key) and not d.revoked for d in dels)
