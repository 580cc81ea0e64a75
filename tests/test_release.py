"""Signed release records (network/release.py): the format, validation, the watcher
over the in-memory IpfsNode, and the `release` sub-command."""

from __future__ import annotations

import cbor2
import pytest
from nacl.signing import SigningKey

import main
from engine.params import PROTOCOL_VERSION
from network import rejection as R
from network.ipfs.memory import MemorySwarm
from network.rejection import Rejection
from network.release import (
    MAX_RELEASE_BYTES,
    NO_KEY_REASON,
    RELEASE_FILE,
    ReleaseRecord,
    ReleaseWatcher,
    SignedRelease,
    newer,
    notice_of,
    off_reason,
    parse,
    release_topic,
    sign,
    signed_bytes,
)

KEY = SigningKey(bytes(range(32)))
PUB = bytes(KEY.verify_key)
OTHER = SigningKey(bytes(range(1, 33)))


def record(version: str = "0.2", **kw) -> ReleaseRecord:
    fields = dict(version=version, date="2026-12-01", notes="https://example.org/0.2",
                  min_protocol=PROTOCOL_VERSION)
    fields.update(kw)
    return ReleaseRecord(**fields)


def test_a_signed_record_round_trips_and_is_small() -> None:
    data = sign(record(), KEY)
    assert len(data) < 300
    got = parse(data, {PUB})
    assert isinstance(got, SignedRelease) and got.record == record() and got.signer == PUB
    # The signature covers a domain-separated encoding, never the bare body.
    assert signed_bytes(record()).startswith(b"hailstone/release/v1\x00\x00\x01")


def test_a_forged_signature_is_rejected() -> None:
    data = bytearray(sign(record(), KEY))
    data[-1] ^= 1  # the last byte of the signature
    assert parse(bytes(data), {PUB}).reason_code == R.BAD_SIGNATURE
    # A changed field under the original signature fails the same way.
    obj = cbor2.loads(sign(record(), KEY))
    obj[2]["version"] = "9.9"
    assert parse(cbor2.dumps(obj, canonical=True), {PUB}).reason_code == R.BAD_SIGNATURE


def test_a_record_signed_by_another_key_is_rejected() -> None:
    data = sign(record(), OTHER)
    assert parse(data, {PUB}).reason_code == R.WRONG_SIGNER
    assert parse(data, set()).reason_code == R.WRONG_SIGNER  # no key set: nothing counts


def test_oversized_garbage_and_noncanonical_records_are_rejected() -> None:
    assert parse(b"\x00" * (MAX_RELEASE_BYTES + 1), {PUB}).reason_code == R.OVERSIZED
    assert parse(b"\xff\x00garbage", {PUB}).reason_code == R.MALFORMED
    assert parse(cbor2.dumps(["work", 1, {}, PUB, b"x" * 64]), {PUB}).reason_code == R.MALFORMED
    obj = cbor2.loads(sign(record(), KEY))
    obj[1] = 2
    assert parse(cbor2.dumps(obj, canonical=True), {PUB}).reason_code == R.WRONG_VERSION
    obj = cbor2.loads(sign(record(), KEY))
    obj[2]["extra"] = 1
    assert parse(cbor2.dumps(obj, canonical=True), {PUB}).reason_code == R.BAD_FIELD
    # The same map in a non-canonical key order is refused (one byte string per record).
    obj = cbor2.loads(sign(record(), KEY))
    body = dict(sorted(obj[2].items(), reverse=True))
    loose = cbor2.dumps([obj[0], obj[1], body, obj[3], obj[4]])
    assert parse(loose, {PUB}).reason_code == R.NONCANONICAL


@pytest.mark.parametrize(
    "fields",
    [
        {"version": "v1"},
        {"version": "1"},
        {"version": "01.2"},
        {"date": "2026-13-01"},
        {"notes": "http://plain.example"},
        {"notes": "https://a b"},
        {"notes": "https://" + "x" * 600},
        {"min_protocol": 0},
        {"min_protocol": True},
    ],
)
def test_bad_fields_are_refused_when_signing_and_when_parsing(fields) -> None:
    with pytest.raises(ValueError):
        record(**fields)
    body = {**record().body(), **fields}
    sig = KEY.sign(b"whatever").signature
    data = cbor2.dumps(["release", 1, body, PUB, sig], canonical=True)
    got = parse(data, {PUB})
    assert isinstance(got, Rejection) and got.reason_code in (R.BAD_FIELD, R.OVERSIZED)


def test_versions_compare_as_numbers_and_the_notice_says_what_to_do() -> None:
    assert newer("0.10", "0.9") and newer("1.0", "0.99.99") and not newer("0.2", "0.2.0")
    assert newer("0.1", "unknown")
    n = notice_of(record("0.2"), current="0.1.0")
    assert n.newer and not n.required
    assert n.text == "Hailstone 0.2 is available (2026-12-01): https://example.org/0.2"
    assert not notice_of(record("0.1.0"), current="0.1.0").newer
    later = notice_of(record("3.0", min_protocol=PROTOCOL_VERSION + 1), current="0.1.0")
    assert later.required and f"speaks protocol {PROTOCOL_VERSION + 1}" in later.text
    assert off_reason(()) == NO_KEY_REASON and "project has not published" in NO_KEY_REASON
    assert "64 hex digits" in off_reason(["abc"])
    assert off_reason([PUB.hex()]) == ""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watchers(tmp_path, keys=frozenset({PUB})):
    swarm = MemorySwarm()
    a, b = swarm.node("a"), swarm.node("b")
    b.connect(a.addresses()[0])
    clock = Clock()
    heard: list = []
    wa = ReleaseWatcher(a, "dev", keys, tmp_path / "a", current="0.1.0", clock=clock)
    wb = ReleaseWatcher(b, "dev", keys, tmp_path / "b", current="0.1.0", clock=clock,
                        on_notice=heard.append)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    return a, b, wa, wb, clock, heard


def test_a_kept_record_is_gossiped_kept_by_the_peer_and_noticed_once(tmp_path) -> None:
    a, b, wa, wb, clock, heard = _watchers(tmp_path)
    (tmp_path / "a" / RELEASE_FILE).write_bytes(sign(record("0.2"), KEY))  # release publish
    wa.start(thread=False)
    wb.start(thread=False)
    assert wa.kept() == record("0.2") and wb.kept() is None
    # A announces once it sees a peer; B keeps it, saves it and notices it once.
    for _ in range(3):
        wa.poll("a", 0)
        wb.poll("b", 0)
        clock.now += 1
    assert wb.kept() == record("0.2")
    assert (tmp_path / "b" / RELEASE_FILE).read_bytes() == sign(record("0.2"), KEY)
    assert [n.version for n in heard] == ["0.2"] and wb.notice().version == "0.2"
    # Replays (A announces again, backing off) and older releases are ignored.
    a.publish(release_topic("dev"), sign(record("0.1.5"), KEY))
    for _ in range(40):
        clock.now += 10
        wa.poll("a", 0)
        wb.poll("b", 0)
    assert wb.kept() == record("0.2") and wb.ignored >= 2 and len(heard) == 1
    announced = [d for t, d in a.published if t == release_topic("dev")]
    assert 3 <= len(announced) < 40  # soon after the peer appeared, then less often
    # A newer one replaces it and is noticed; a forged one is counted, not kept.
    a.publish(release_topic("dev"), sign(record("0.3"), OTHER))
    a.publish(release_topic("dev"), sign(record("0.3"), KEY))
    for _ in range(3):
        wb.poll("b", 0)
    assert wb.kept() == record("0.3") and [n.version for n in heard] == ["0.2", "0.3"]
    assert wb.rejected == {R.WRONG_SIGNER: 1}
    wa.stop()
    wb.stop()


def test_without_release_keys_nothing_is_subscribed_or_kept(tmp_path) -> None:
    a, _b, wa, _wb, _clock, _heard = _watchers(tmp_path, keys=frozenset())
    (tmp_path / "a" / RELEASE_FILE).write_bytes(sign(record("0.2"), KEY))
    wa.start()
    assert not wa.enabled and wa.kept() is None and wa._sub is None
    assert wa.offer(sign(record("0.2"), KEY)).reason_code == R.WRONG_SIGNER
    wa.stop()


def _run(*argv: str) -> int:
    args = main.build_parser().parse_args(list(argv))
    return args.func(args)


def test_the_release_command_makes_a_key_signs_checks_and_publishes(tmp_path, capsys) -> None:
    pw = tmp_path / "pw"
    pw.write_text("correct horse battery staple\n")
    key = tmp_path / "release.key"
    assert _run("release", "keygen", "--out", str(key), "--passphrase-file", str(pw),
                "--kdf", "min") == 0
    pub = capsys.readouterr().out.strip()
    assert len(bytes.fromhex(pub)) == 32 and b"box" in key.read_bytes()  # encrypted
    assert _run("release", "keygen", "--out", str(key), "--passphrase-file", str(pw)) == 1
    out = tmp_path / "r.cbor"
    assert _run("release", "sign", "--key", str(key), "--passphrase-file", str(pw),
                "--version", "99.0", "--date", "2026-12-01", "--notes",
                "https://example.org/99", "--out", str(out)) == 0
    profile = tmp_path / "profile"
    profile.mkdir()
    # Without the key in release_keys the profile neither accepts nor publishes it.
    assert _run("release", "show", str(out), "--data-dir", str(profile)) == 1
    assert "release_keys is empty" in capsys.readouterr().out
    assert _run("release", "publish", str(out), "--data-dir", str(profile)) == 1
    (profile / "settings.json").write_text(f'{{"release_keys": ["{pub}"]}}')
    assert _run("release", "show", str(out), "--data-dir", str(profile)) == 0
    assert "valid for this profile; newer than this program" in capsys.readouterr().out
    assert _run("release", "publish", str(out), "--data-dir", str(profile)) == 0
    assert (profile / RELEASE_FILE).read_bytes() == out.read_bytes()
    # The same (or an older) release again is refused: a replay changes nothing.
    assert _run("release", "publish", str(out), "--data-dir", str(profile)) == 1
    assert "must be newer" in capsys.readouterr().err
    # Bad fields are usage errors, said in one line.
    assert _run("release", "sign", "--key", str(key), "--passphrase-file", str(pw),
                "--version", "99", "--date", "2026-12-01", "--notes", "https://x",
                "--out", str(out)) == 2
