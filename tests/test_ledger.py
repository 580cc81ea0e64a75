"""The SQLite ledger: real files in temporary directories, real signed records."""

from __future__ import annotations

import sqlite3

import pytest
from nacl.signing import SigningKey

from engine.params import Params
from network import codec
from network.ledger import (
    CLAIM_HOLD_KEEP_S,
    LEDGER_FILENAME,
    MIGRATIONS,
    RECENT_REJECTIONS_KEPT,
    SCHEMA_VERSION,
    Ledger,
    LedgerError,
    StoredRecord,
    stored_record,
)
from network.records import AccountRecord, DelegationRecord, WorkRecord
from network.state import derive_state

T0 = 1_750_000_000
PARAMS = Params.custom(name="ledger-test", unit_bits=8, block_bits=4, sieve_k=4)
ACCOUNT = SigningKey(bytes([1]) * 32)
NODE = SigningKey(bytes([2]) * 32)


def _pub(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def _work(unit: int, root_byte: int = 7, created: int = T0 + 10) -> StoredRecord:
    rec = WorkRecord(
        params=PARAMS,
        unit=unit,
        root=bytes([root_byte]) * 32,
        tested=10,
        odd_steps=100,
        max_value=1000,
        max_n=PARAMS.start + 1,
        overflows=0,
        backend="cpu",
        compute_ms=5,
        node=_pub(NODE),
        account=_pub(ACCOUNT),
        created=created,
    )
    return stored_record(codec.sign(rec, NODE), source="peer-a")


def _delegation() -> StoredRecord:
    rec = DelegationRecord(account=_pub(ACCOUNT), node=_pub(NODE), created=T0)
    return stored_record(codec.sign(rec, ACCOUNT))


def _account() -> StoredRecord:
    rec = AccountRecord(account=_pub(ACCOUNT), username="alice", created=T0)
    return stored_record(codec.sign(rec, ACCOUNT))


@pytest.fixture
def ledger(tmp_path):
    with Ledger.in_dir(tmp_path / "profile", clock=lambda: 1000.0) as led:
        yield led


def test_new_file_is_migrated_and_in_wal_mode(tmp_path):
    path = tmp_path / "profile" / LEDGER_FILENAME
    with Ledger.in_dir(tmp_path / "profile") as led:
        assert led.path == path
        assert led.schema_version() == SCHEMA_VERSION
        assert led.journal_mode() == "wal"
    # A second open finds the schema in place and keeps the data.
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert {"records", "outbox", "claims", "peer_heads", "rejection_counts"} <= tables


def test_migrates_an_existing_empty_file(tmp_path):
    path = tmp_path / LEDGER_FILENAME
    sqlite3.connect(path).close()  # an empty SQLite file at user_version 0
    with Ledger(path) as led:
        assert led.schema_version() == SCHEMA_VERSION
        assert led.heads_list() == []


def test_refuses_a_newer_schema(tmp_path):
    path = tmp_path / LEDGER_FILENAME
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(LedgerError) as err:
        Ledger(path)
    assert err.value.reason == "schema_too_new"


def test_refuses_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / LEDGER_FILENAME
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError) as err:
        Ledger(path)
    assert err.value.reason == "corrupt"


def test_records_are_stored_once_and_survive_reopening(tmp_path):
    work = _work(3)
    with Ledger.in_dir(tmp_path) as led:
        assert led.add_record(work) is True
        assert led.add_record(work) is False  # same CID: a no-op
        assert led.add_records([work, _delegation(), _delegation()]) == 1
        assert led.record_count() == 2
    with Ledger.in_dir(tmp_path) as led:
        assert led.has(work.cid)
        assert led.get(work.cid) == work.data
        assert led.get("bafkreinothere") is None
        (row,) = led.records(kind="work")
        assert (row.unit, row.account, row.signer, row.source) == (
            3,
            _pub(ACCOUNT),
            _pub(NODE),
            "peer-a",
        )
        assert [r.cid for r in led.records(unit=3)] == [work.cid]
        assert led.heads_list() == sorted([work.cid, _delegation().cid])


def test_heads_list_is_sorted_and_missing_reports_the_rest(ledger):
    recs = [_work(u) for u in range(5)]
    ledger.add_records(recs[:3])
    assert ledger.heads_list() == sorted(r.cid for r in recs[:3])
    assert ledger.missing(r.cid for r in recs) == sorted(r.cid for r in recs[3:])


def test_valid_records_feed_derive_state(ledger):
    ledger.add_records([_account(), _delegation(), _work(0)])
    state = derive_state(ledger.valid_records(), PARAMS)
    assert state.record_count == 3
    assert state.status_of(0) == "reported_once"
    assert state.accounts[_pub(ACCOUNT)].display_name == "alice"


def test_bad_arguments_are_refused_without_writing(ledger):
    with pytest.raises(LedgerError) as err:
        ledger.add_record(StoredRecord(cid="", kind="work", data=b"x", signer=b"k"))
    assert err.value.reason == "bad_argument"
    assert ledger.record_count() == 0


def test_outbox_lifecycle(tmp_path):
    mine = _work(1)
    with Ledger.in_dir(tmp_path, clock=lambda: 50.0) as led:
        assert led.add_own_record(mine) is True
        assert led.has(mine.cid)
        (entry,) = led.outbox()
        assert (entry.cid, entry.data, entry.published_at, entry.publish_count) == (
            mine.cid,
            mine.data,
            None,
            0,
        )
        assert led.mark_published([mine.cid], at=60.0) == 1
        assert led.mark_published([mine.cid], at=70.0) == 1
        assert led.mark_published(["bafkreiunknown"]) == 0
    # Still pending after a restart: nothing is lost.
    with Ledger.in_dir(tmp_path, clock=lambda: 80.0) as led:
        (entry,) = led.outbox()
        assert (entry.published_at, entry.publish_count) == (70.0, 2)
        # A head without the CID list acknowledges nothing; with it, the entry is done.
        assert led.note_peer_head("peer-b", "bafkreihead1") == 0
        assert led.outbox_count() == 1
        assert led.note_peer_head("peer-b", "bafkreihead2", [mine.cid, "bafkreiother"]) == 1
        assert led.outbox_count() == 0
        assert led.outbox() == []
        (done,) = led.outbox(pending_only=False)
        assert (done.acknowledged_at, done.acknowledged_by) == (80.0, "peer-b")
        # A second peer's head does not re-acknowledge.
        assert led.acknowledge([mine.cid], "peer-c") == 0
        (head,) = led.peer_heads()
        assert (head.peer_id, head.head_cid, head.record_count) == ("peer-b", "bafkreihead2", 2)


def test_acknowledging_reads_only_the_entries_no_peer_has_acknowledged(tmp_path):
    first, second = _work(1), _work(2, root_byte=9)
    with Ledger.in_dir(tmp_path, clock=lambda: 50.0) as led:
        led.add_own_record(first)
        led.add_own_record(second)
        assert sorted(led.unacknowledged()) == sorted([first.cid, second.cid])
        # (made at 50.0: none before it, both before 50.5)
        assert led.unacknowledged(created_before=50.0) == []
        assert len(led.unacknowledged(created_before=50.5)) == 2
        assert led.acknowledge([first.cid, "bafkreiother"], "peer-b") == 1
        # A page listing none of the waiting entries changes nothing.
        assert led.acknowledge([first.cid, "bafkreiother"], "peer-c") == 0
        assert [e.cid for e in led.outbox()] == [second.cid]
        assert led.acknowledge(reversed([second.cid, first.cid]), "peer-c") == 1
        assert led.outbox_count() == 0
        # The waiting entries are read from their own index, not the whole outbox.
        plan = led._read(lambda c: c.execute(
            "EXPLAIN QUERY PLAN SELECT cid FROM outbox WHERE acknowledged_at IS NULL"
        ).fetchall())
        assert "outbox_waiting" in " ".join(str(row[-1]) for row in plan)


def _synchronous(led: Ledger) -> str:
    """The SQLite sync mode the ledger's last write committed with."""
    mode = led._read(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    return {1: "NORMAL", 2: "FULL"}[mode]


def test_own_records_commit_durably_what_the_network_gives_again_does_not(tmp_path):
    # FULL flushes the WAL at each commit; NORMAL leaves it to the next FULL commit or
    # checkpoint (a killed process loses nothing; a power loss the last of these).
    mine, theirs = _work(1), _work(2, root_byte=9)
    with Ledger.in_dir(tmp_path, clock=lambda: 50.0) as led:
        assert _synchronous(led) == "FULL"
        led.add_records([_delegation(), theirs])
        assert _synchronous(led) == "NORMAL"
        led.add_own_record(mine)
        assert _synchronous(led) == "FULL"
        led.mark_published([mine.cid])
        assert _synchronous(led) == "NORMAL"
        led.put_claim("c1", 3, _pub(NODE), _pub(ACCOUNT), 500.0)
        assert _synchronous(led) == "NORMAL"
        led.drop_claim("c1")
        assert _synchronous(led) == "FULL"
        led.acknowledge([mine.cid], "peer-b")
        assert _synchronous(led) == "NORMAL"
        led.note_peer_head("peer-b", "bafkreihead")
        assert _synchronous(led) == "NORMAL"
    with Ledger.in_dir(tmp_path) as led:
        assert led.has(theirs.cid) and led.has(mine.cid)
        assert led.outbox_count() == 0


def test_claims_expire(ledger):
    node, account = _pub(NODE), _pub(ACCOUNT)
    ledger.put_claim("c1", 4, node, account, expires_at=100.0)
    ledger.put_claim("c2", 5, node, account, expires_at=200.0)
    assert [c.unit for c in ledger.active_claims(now=50.0)] == [4, 5]
    assert [c.unit for c in ledger.active_claims(now=100.0)] == [5]  # expiry is exclusive
    # Renewing with progress extends; an older renewal never shortens a claim.
    ledger.put_claim("c1", 4, node, account, expires_at=300.0, done=1)
    ledger.put_claim("c1", 4, node, account, expires_at=150.0, done=2)
    assert [(c.unit, c.expires_at) for c in ledger.active_claims(now=250.0)] == [(4, 300.0)]
    assert ledger.expire_claims(now=250.0) == 1
    assert [c.claim_id for c in ledger.active_claims(now=0.0)] == ["c1"]
    assert ledger.drop_claim("c1") and not ledger.drop_claim("c1")
    assert ledger.active_claims(now=0.0) == []


def test_rejection_counters_and_bounded_log(ledger):
    ledger.count_rejection("bad_signature", "from peer x", source="peer-x", at=1.0)
    ledger.count_rejection("bad_signature", "again", at=2.0)
    ledger.count_rejection("oversized", "y" * 10_000, at=3.0)
    assert ledger.rejection_counts() == {"bad_signature": 2, "oversized": 1}
    assert ledger.rejected_total() == 3
    newest = ledger.recent_rejections(limit=2)
    assert [(e.reason, e.at) for e in newest] == [("oversized", 3.0), ("bad_signature", 2.0)]
    assert len(newest[0].detail) == 300  # detail from the network is truncated
    for i in range(RECENT_REJECTIONS_KEPT + 20):
        ledger.count_rejection("malformed", str(i))
    assert len(ledger.recent_rejections(limit=10_000)) == RECENT_REJECTIONS_KEPT
    assert ledger.recent_rejections(limit=1)[0].detail == str(RECENT_REJECTIONS_KEPT + 19)
    assert ledger.rejection_counts()["malformed"] == RECENT_REJECTIONS_KEPT + 20


def _fill_to_the_limit(led: Ledger) -> None:
    # Cap the database file at its current size plus a little, so a large batch hits
    # SQLITE_FULL the way a full disk does.
    conn = led._conn  # the test reaches in only to set the cap
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count={pages + 2}")


def test_full_disk_raises_disk_full_and_changes_nothing(tmp_path):
    with Ledger.in_dir(tmp_path) as led:
        led.add_records([_delegation(), _work(0)])
        before = led.heads_list()
        _fill_to_the_limit(led)
        big = [_work(u, created=T0 + 100 + u) for u in range(1, 400)]
        with pytest.raises(LedgerError) as err:
            led.add_records(big)
        assert err.value.reason == "disk_full"
        # Readable, unchanged, and still usable for small writes that fit.
        assert led.heads_list() == before
        assert led.record_count() == 2
        with pytest.raises(LedgerError) as err:
            for rec in big:
                led.add_own_record(rec)
        assert err.value.reason == "disk_full"
        stored = set(led.heads_list())
        # Every write that returned is complete: record and outbox entry together.
        assert {e.cid for e in led.outbox()} == stored - set(before)
    with Ledger.in_dir(tmp_path) as led:
        assert set(led.heads_list()) == stored
        assert led.schema_version() == SCHEMA_VERSION


def test_closed_ledger_raises_ledger_error(tmp_path):
    led = Ledger.in_dir(tmp_path)
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerError) as err:
        led.heads_list()
    assert err.value.reason == "closed"


def test_a_node_holds_one_claim_a_new_unit_replaces_the_old(tmp_path):
    from network.ledger import Ledger

    with Ledger(tmp_path / "l.sqlite3", clock=lambda: 1000.0) as ledger:
        node, account = b"\x01" * 32, b"\x02" * 32
        ledger.put_claim("n1", 5, node, account, 2000.0)
        ledger.put_claim("n1", 5, node, account, 1500.0)  # a renewal never shortens
        assert [(c.unit, c.expires_at) for c in ledger.active_claims(1000.0)] == [(5, 2000.0)]
        ledger.put_claim("n1", 6, node, account, 1200.0)  # moved on: unit 5 is free again
        assert [(c.unit, c.expires_at) for c in ledger.active_claims(1000.0)] == [(6, 1200.0)]


def test_a_renewal_without_progress_keeps_the_old_expiry(tmp_path):
    with Ledger(tmp_path / "l.sqlite3", clock=lambda: 1000.0) as ledger:
        node, account = b"\x01" * 32, b"\x02" * 32
        ledger.put_claim("n1", 5, node, account, 1900.0, received_at=1000.0)
        # Renewed every 300 s showing 10 blocks done each time: extended each time.
        for i, t in enumerate((1300.0, 1600.0), start=1):
            terms = ledger.put_claim("n1", 5, node, account, t + 900, received_at=t, done=10 * i)
            assert (terms.expires_at, terms.done, terms.progress_at) == (t + 900, 10 * i, t)
        # Then it stalls: renewals with the same (or a lower) done keep 2500.
        for t, done in ((1900.0, 20), (2200.0, 20), (2400.0, 3)):
            terms = ledger.put_claim("n1", 5, node, account, t + 900, received_at=t, done=done)
            assert (terms.expires_at, terms.done, terms.progress_at) == (2500.0, 20, 1600.0)
        (row,) = ledger.active_claims(2499.0)
        assert (row.expires_at, row.done, row.progress_at, row.received_at) == (
            2500.0, 20, 1600.0, 2400.0)
        # So it lapses within one TTL of its last progress.
        assert ledger.active_claims(2500.0) == []
        # Progress again after the lapse (the row is still stored) revives it.
        ledger.put_claim("n1", 5, node, account, 3500.0, received_at=2600.0, done=21)
        assert [c.expires_at for c in ledger.active_claims(2600.0)] == [3500.0]


def test_the_first_claim_of_an_account_on_a_unit_survives_expiry_and_reclaims(tmp_path):
    with Ledger(tmp_path / "l.sqlite3", clock=lambda: 0.0) as ledger:
        node, other_node, account = b"\x01" * 32, b"\x03" * 32, b"\x02" * 32
        ledger.put_claim("n1", 5, node, account, 1900.0, received_at=1000.0)
        assert ledger.claim_first_seen(account, 5) == 1000.0
        # The claim lapses and is expired away; the node claims unit 6, then 5 again,
        # and the account's other node claims 5 too: first seen stays 1000.
        assert ledger.expire_claims(now=2000.0) == 1
        ledger.put_claim("n1", 6, node, account, 2900.0, received_at=2000.0)
        ledger.put_claim("n1", 5, node, account, 3900.0, received_at=3000.0)
        ledger.put_claim("n2", 5, other_node, account, 3900.0, received_at=3100.0)
        assert ledger.claim_first_seen(account, 5) == 1000.0
        assert ledger.claim_first_seen(account, 6) == 2000.0
        assert [(c.claim_id, c.first_seen) for c in ledger.active_claims(3200.0)] == [
            ("n1", 1000.0), ("n2", 1000.0)]
        # Another account's first claim on the unit is its own.
        ledger.put_claim("n3", 5, b"\x04" * 32, b"\x05" * 32, 3900.0, received_at=3150.0)
        assert ledger.claim_first_seen(b"\x05" * 32, 5) == 3150.0


def test_a_reclaim_does_not_reset_the_hold_cap_in_next_unit(tmp_path):
    from network.state import MAX_CLAIM_HOLD_S, next_unit

    with Ledger(tmp_path / "l.sqlite3", clock=lambda: 0.0) as ledger:
        ledger.add_records([_delegation(), _work(0)])
        st = derive_state(ledger.valid_records(), PARAMS)
        me = _pub(ACCOUNT)  # reported unit 0 (the frontier): its next unit is 1
        squatter, node = b"\x02" * 32, b"\x01" * 32
        ledger.put_claim("s", 1, node, squatter, 1000.0 + 900, received_at=1000.0)
        # The squatter renews with faked progress, and now and then drops the claim
        # and makes it afresh (as after a lapse): unit 1 stays closed...
        t, done = 1000.0, 0
        while t + 300 < 1000.0 + MAX_CLAIM_HOLD_S:
            t, done = t + 300, done + 1
            ledger.put_claim("s", 1, node, squatter, t + 900, received_at=t, done=done)
            if done % 7 == 0:
                ledger.drop_claim("s")
                ledger.put_claim("s", 1, node, squatter, t + 900, received_at=t)
            assert next_unit(st, ledger.active_claims(t), me, t) == 2
        # ...until MAX_CLAIM_HOLD_S after its first claim, whatever it does after that.
        end = 1000.0 + MAX_CLAIM_HOLD_S
        ledger.drop_claim("s")
        ledger.put_claim("s", 1, node, squatter, end + 900, received_at=end - 1)
        assert next_unit(st, ledger.active_claims(end - 1), me, end - 1) == 2
        ledger.put_claim("s", 1, node, squatter, end + 900, received_at=end, done=done + 1)
        (claim,) = ledger.active_claims(end)
        assert claim.first_seen == 1000.0 and claim.expires_at > end
        assert next_unit(st, [claim], me, end) == 1


def test_claim_holds_are_pruned_after_a_day_or_once_the_unit_is_verified(tmp_path):
    with Ledger(tmp_path / "l.sqlite3", clock=lambda: 0.0) as ledger:
        node, account = b"\x01" * 32, b"\x02" * 32
        ledger.put_claim("n1", 5, node, account, 1900.0, received_at=1000.0)
        ledger.put_claim("n1", 6, node, account, 1900.0 + CLAIM_HOLD_KEEP_S, received_at=1000.0)
        ledger.put_claim("n2", 7, b"\x03" * 32, account, 1900.0, received_at=1000.0)
        # A day later: unit 5's hold (no claim left on it) goes; unit 6's claim still
        # stands, so its hold stays however old it is.
        ledger.expire_claims(now=1000.0 + CLAIM_HOLD_KEEP_S)
        assert ledger.claim_first_seen(account, 5) is None
        assert ledger.claim_first_seen(account, 6) == 1000.0
        assert ledger.claim_first_seen(account, 7) is None
        ledger.put_claim("n2", 7, b"\x03" * 32, account, 99_999_999.0, received_at=2000.0)
        assert ledger.claim_hold_units() == [6, 7]
        assert ledger.forget_claim_holds([7, 8]) == 1
        assert ledger.claim_hold_units() == [6]
        assert ledger.claim_first_seen(account, 7) is None


def _v1_file(path) -> None:
    """A ledger file as the first schema wrote it: MIGRATIONS[0] (shipped, never
    edited) and rows written with that version's statements."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    conn.execute("COMMIT")
    rec = _delegation()
    conn.execute(
        "INSERT INTO records (cid, kind, bytes, signer, account, unit, received_at, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rec.cid, rec.kind, rec.data, rec.signer, rec.account, rec.unit, 500.0, None),
    )
    for claim_id, unit, node, received in (("a", 4, b"\x01" * 32, 900.0), ("b", 4, b"\x03" * 32, 950.0)):
        conn.execute(
            "INSERT INTO claims (claim_id, unit, node, account, expires_at, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(claim_id) DO UPDATE SET"
            " expires_at = CASE WHEN claims.unit = excluded.unit"
            " THEN max(claims.expires_at, excluded.expires_at) ELSE excluded.expires_at END,"
            " unit = excluded.unit, received_at = excluded.received_at",
            (claim_id, unit, node, b"\x02" * 32, 2000.0, received),
        )
    conn.close()


def test_a_version_1_ledger_file_is_migrated_with_its_claims(tmp_path):
    path = tmp_path / LEDGER_FILENAME
    _v1_file(path)
    with Ledger(path, clock=lambda: 1000.0) as led:
        assert led.schema_version() == SCHEMA_VERSION == 3
        assert led.heads_list() == [_delegation().cid]
        rows = led.active_claims(1000.0)
        # Old claims: done 0, progress and first seen at their last renewal (the best
        # the old file knows; one account, so its earliest claim on unit 4).
        assert [(c.claim_id, c.done, c.progress_at, c.first_seen) for c in rows] == [
            ("a", 0, 900.0, 900.0), ("b", 0, 950.0, 900.0)]
        # And the new rules apply to them at once.
        led.put_claim("a", 4, b"\x01" * 32, b"\x02" * 32, 5000.0)
        assert led.active_claims(1999.0)[0].expires_at == 2000.0
        led.put_claim("a", 4, b"\x01" * 32, b"\x02" * 32, 5000.0, done=1)
        assert led.active_claims(1999.0)[0].expires_at == 5000.0
    with Ledger(path) as led:  # a second open finds version 3 and changes nothing
        assert led.schema_version() == 3 and len(led.active_claims(0.0)) == 2
