"""The ledger: every validated record by CID, the outbox, claims and sync bookkeeping.

One SQLite file in WAL mode under the profile's data directory (`ledger.sqlite3`).
Every public write runs in one `BEGIN IMMEDIATE ... COMMIT` transaction, and a
failure (full disk, I/O error) rolls back completely and raises `LedgerError` with a
stable reason code; the ledger stays readable and unchanged. What this node made (its
own records and outbox, rejection counts, ...) commits with `synchronous=FULL`, durable
when the method returns; what the network gives again (peers' records, claims, outbox
and head bookkeeping) commits with `synchronous=NORMAL`: it survives a killed process,
and a power loss may take the last of it, never a part of a transaction (`_write`).

The ledger stores what it is given: records reach it only after `network.codec.parse`
and `network.validate.validate` accepted them (the worker's job). The network state is
derived from the stored records by the pure function `network.state.derive_state`.

Schema versions are applied in order from `MIGRATIONS` and tracked in
`PRAGMA user_version` (docs/PROTOCOL.md, "The ledger").
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from network.codec import encode, parse, record_cid
from network.records import SignedRecord
from network.rejection import Accepted, Rejection

LEDGER_FILENAME = "ledger.sqlite3"

# How many detailed rejection entries are kept (the per-reason counters are unbounded).
RECENT_REJECTIONS_KEPT = 200
# Detail strings from the network are untrusted; keep the log small.
MAX_DETAIL_CHARS = 300
# A claim hold (when an account first claimed a unit) is kept this long, while no
# claim of that account on that unit is stored, and dropped sooner once the unit is
# verified (`forget_claim_holds`). A day is six times MAX_CLAIM_HOLD_S: a hold is
# never forgotten while it can still cap anything a re-claim could win back, and
# the table holds one small row per (account, unit) claimed in a day.
CLAIM_HOLD_KEEP_S = 24 * 3600
# Rejections are counted in memory and written at most this often (and at close): one
# fsync'd write per rejected message capped a flood's cost at the disk (7.4 ms each,
# 134/s, below one peer's rate allowance). A kill -9 loses at most this many seconds
# of rejection counts, never a record.
REJECTION_FLUSH_S = 5.0

# Reason codes of LedgerError (stable; app/messages.py maps each to a sentence).
DISK_FULL = "disk_full"
IO_ERROR = "io_error"
CORRUPT = "corrupt"
BUSY = "busy"
READ_ONLY = "read_only"
CANNOT_OPEN = "cannot_open"
SCHEMA_TOO_NEW = "schema_too_new"
CLOSED = "closed"
BAD_ARGUMENT = "bad_argument"
DATABASE_ERROR = "database_error"

# Primary SQLite result codes (https://sqlite.org/rescode.html) -> reason code.
_SQLITE_REASONS = {
    5: BUSY,  # SQLITE_BUSY
    6: BUSY,  # SQLITE_LOCKED
    8: READ_ONLY,  # SQLITE_READONLY
    10: IO_ERROR,  # SQLITE_IOERR
    11: CORRUPT,  # SQLITE_CORRUPT
    13: DISK_FULL,  # SQLITE_FULL
    14: CANNOT_OPEN,  # SQLITE_CANTOPEN
    26: CORRUPT,  # SQLITE_NOTADB
}


class LedgerError(Exception):
    """A ledger operation failed; nothing of it was written.

    Attributes:
        reason: one of the reason codes above ("disk_full", "io_error", ...).
        detail: one line with what SQLite said.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _reason_for(exc: sqlite3.Error) -> str:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        # Extended codes carry the primary code in the low byte.
        return _SQLITE_REASONS.get(code & 0xFF, DATABASE_ERROR)
    text = str(exc).lower()
    if "full" in text:
        return DISK_FULL
    if "not a database" in text or "malformed" in text:
        return CORRUPT
    return DATABASE_ERROR


# --- schema -----------------------------------------------------------------------

_V1 = (
    """CREATE TABLE records (
        cid TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        bytes BLOB NOT NULL,
        signer BLOB NOT NULL,
        account BLOB,
        unit INTEGER,
        received_at REAL NOT NULL,
        source TEXT
    ) WITHOUT ROWID""",
    "CREATE INDEX records_kind ON records(kind)",
    "CREATE INDEX records_unit ON records(unit) WHERE unit IS NOT NULL",
    """CREATE TABLE outbox (
        cid TEXT PRIMARY KEY,
        bytes BLOB NOT NULL,
        created REAL NOT NULL,
        published_at REAL,
        publish_count INTEGER NOT NULL DEFAULT 0,
        acknowledged_at REAL,
        acknowledged_by TEXT
    ) WITHOUT ROWID""",
    """CREATE TABLE claims (
        claim_id TEXT PRIMARY KEY,
        unit INTEGER NOT NULL,
        node BLOB NOT NULL,
        account BLOB NOT NULL,
        expires_at REAL NOT NULL,
        received_at REAL NOT NULL
    ) WITHOUT ROWID""",
    "CREATE INDEX claims_unit ON claims(unit)",
    "CREATE INDEX claims_expiry ON claims(expires_at)",
    """CREATE TABLE peer_heads (
        peer_id TEXT PRIMARY KEY,
        head_cid TEXT NOT NULL,
        seen_at REAL NOT NULL,
        record_count INTEGER
    ) WITHOUT ROWID""",
    """CREATE TABLE rejection_counts (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL
    ) WITHOUT ROWID""",
    """CREATE TABLE rejection_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        source TEXT
    )""",
)

# Version 2: claims carry the blocks done and when progress was last seen (a renewal
# extends a claim only with progress), and claim_holds remembers when each account's
# first claim on a unit was seen (network.state.MAX_CLAIM_HOLD_S counts from there;
# it outlives the claim, so a re-claim does not reset it). A claim already stored
# counts as first seen at its last renewal: the best the old file knows.
_V2 = (
    "ALTER TABLE claims ADD COLUMN done INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE claims ADD COLUMN progress_at REAL NOT NULL DEFAULT 0",
    "UPDATE claims SET progress_at = received_at",
    """CREATE TABLE claim_holds (
        account BLOB NOT NULL,
        unit INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (account, unit)
    ) WITHOUT ROWID""",
    "CREATE INDEX claim_holds_first_seen ON claim_holds(first_seen)",
    """INSERT OR IGNORE INTO claim_holds (account, unit, first_seen)
        SELECT account, unit, min(received_at) FROM claims GROUP BY account, unit""",
)

# Version 3: the outbox entries no peer has acknowledged, indexed (a few, among every
# record this node ever made): each page of a peer's head we read is checked against
# them (Ledger.acknowledge), which scanned the whole outbox.
_V3 = ("CREATE INDEX outbox_waiting ON outbox(cid) WHERE acknowledged_at IS NULL",)

# MIGRATIONS[i] takes the schema from version i to version i + 1. Never edit an entry
# that has shipped; append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


# --- row types ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One row of the records table.

    Attributes:
        cid: the record's CID (its identity).
        kind: "account", "delegation", "work", "check" or "dispute".
        data: the record's canonical bytes.
        signer: the signing public key (32 bytes).
        account: the account the record belongs to, when it has one.
        unit: the work unit it is about (work, check, dispute), else None.
        received_at: unix seconds when this ledger first stored it.
        source: the peer it came from, or None for records made here.
    """

    cid: str
    kind: str
    data: bytes
    signer: bytes
    account: bytes | None = None
    unit: int | None = None
    received_at: float = 0.0
    source: str | None = None


def stored_record(signed: SignedRecord, source: str | None = None) -> StoredRecord:
    """The ledger row for a validated signed record (CID, kind, signer, account, unit).

    Raises:
        ValueError: if the record exceeds its kind's size cap (validation refuses those).
    """
    data = encode(signed)
    payload = signed.record
    return StoredRecord(
        cid=record_cid(data),
        kind=signed.kind,
        data=data,
        signer=signed.signer,
        account=getattr(payload, "account", None),
        # Only work records name their unit; checks and disputes name a work CID.
        unit=getattr(payload, "unit", None),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A record this node made, kept until a peer's head includes it."""

    cid: str
    data: bytes
    created: float
    published_at: float | None
    publish_count: int
    acknowledged_at: float | None
    acknowledged_by: str | None


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """A claim on a unit: `node` (of `account`) works on `unit` until `expires_at`.

    Attributes:
        done: the most blocks of the unit any of its claims said were done.
        progress_at: when `done` last grew (or the claim was first stored).
        first_seen: when this account's first claim on this unit was seen (None if
            that was forgotten), for network.state.claim_in_force.
    """

    claim_id: str
    unit: int
    node: bytes
    account: bytes
    expires_at: float
    received_at: float
    done: int = 0
    progress_at: float = 0.0
    first_seen: float | None = None


@dataclass(frozen=True, slots=True)
class ClaimTerms:
    """What a stored claim holds: its unit, expiry, blocks done and last progress."""

    unit: int
    expires_at: float
    done: int
    progress_at: float


def renewed_claim(prior: ClaimTerms | None, claim: ClaimTerms) -> ClaimTerms:
    """The terms a node's claim is stored with, given its stored one (`prior`).

    A claim on a new unit (or the node's first) is taken as it is. A renewal on the
    same unit extends the expiry (never shortens it) only when it shows progress,
    `done` above the stored one; otherwise the stored terms stay, so a claim renewed
    without progress lapses at the expiry it already had (PROTOCOL §8, "Claims").
    `claim.progress_at` is when the claim arrived.
    """
    if prior is None or prior.unit != claim.unit:
        return claim
    if claim.done > prior.done:
        return ClaimTerms(
            claim.unit, max(prior.expires_at, claim.expires_at), claim.done, claim.progress_at
        )
    return prior


@dataclass(frozen=True, slots=True)
class PeerHead:
    """The latest head a peer published."""

    peer_id: str
    head_cid: str
    seen_at: float
    record_count: int | None


@dataclass(frozen=True, slots=True)
class RejectionEntry:
    """One entry of the bounded recent-rejections log."""

    at: float
    reason: str
    detail: str
    source: str | None


_T = TypeVar("_T")


class Ledger:
    """The node's SQLite ledger. Thread-safe (one connection behind a lock).

    Use `Ledger.in_dir(data_dir)` for the profile's ledger, or `Ledger(path)`.
    Every method raises `LedgerError` on failure and nothing else.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # rejections not yet written (see REJECTION_FLUSH_S), under their own lock
        self._rej_lock = threading.Lock()
        self._rej_counts: dict[str, int] = {}
        self._rej_log: deque[RejectionEntry] = deque(maxlen=RECENT_REJECTIONS_KEPT)
        self._rej_flushed = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(CANNOT_OPEN, f"cannot create {self.path.parent}: {exc}") from None
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so each public
            # write is exactly one transaction.
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
        except sqlite3.Error as exc:
            raise LedgerError(CANNOT_OPEN, f"{self.path}: {exc}") from None
        self._conn = conn
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise LedgerError(DATABASE_ERROR, f"WAL mode refused (got {mode!r})")
            # FULL: a committed transaction survives power loss, also in WAL mode.
            conn.execute("PRAGMA synchronous=FULL")
            self._synchronous = "FULL"
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            self._close_quietly()
            raise LedgerError(_reason_for(exc), f"{self.path}: {exc}") from None
        except LedgerError:
            self._close_quietly()
            raise

    @classmethod
    def in_dir(cls, data_dir: str | Path, *, clock: Callable[[], float] = time.time) -> Ledger:
        """Open (or create) the ledger file inside the profile's data directory."""
        return cls(Path(data_dir) / LEDGER_FILENAME, clock=clock)

    # --- plumbing -------------------------------------------------------------------

    def _close_quietly(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self) -> None:
        """Close the ledger (checkpointing the WAL). Safe to call twice."""
        if self._conn is not None:
            with contextlib.suppress(LedgerError):  # only counters; a full disk must not raise
                self.flush_rejections()
        with self._lock:
            self._close_quietly()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise LedgerError(CLOSED, "the ledger is closed")
        return self._conn

    def _migrate(self) -> None:
        conn = self._connection()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                SCHEMA_TOO_NEW,
                f"{self.path} has schema {version}; this version knows up to {SCHEMA_VERSION}",
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[target - 1]:
                    conn.execute(statement)
                # user_version lives in the database header and is part of this transaction.
                conn.execute(f"PRAGMA user_version={target:d}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _write(self, fn: Callable[[sqlite3.Connection], _T], *, durable: bool = True) -> _T:
        """Run `fn` in one immediate transaction; roll back and raise LedgerError on failure.

        `durable=False` commits without flushing the WAL (synchronous=NORMAL) for what
        the network gives us again if a power loss takes it: peers' records (listed in
        their heads), claims (announced again while held), outbox and sync bookkeeping
        (a lost acknowledgement costs one re-announcement). The WAL is written in
        order, so the next durable commit (our own record) flushes these with it; a
        killed process loses nothing either way. One fsync'd commit per gossiped
        record was a fifth of a busy swarm node's network loop (bench/swarm.py).
        """
        with self._lock:
            conn = self._connection()
            try:
                self._set_synchronous(conn, "FULL" if durable else "NORMAL")
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise LedgerError(_reason_for(exc), str(exc)) from None
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # SQLite may already have rolled back (e.g. after SQLITE_FULL)
                if isinstance(exc, sqlite3.Error):
                    raise LedgerError(_reason_for(exc), str(exc)) from None
                raise
            return result

    def _set_synchronous(self, conn: sqlite3.Connection, mode: str) -> None:
        # (only outside a transaction; the setting is the connection's)
        if self._synchronous != mode:
            conn.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode

    def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise LedgerError(_reason_for(exc), str(exc)) from None

    def schema_version(self) -> int:
        """The schema version of the open file (PRAGMA user_version)."""
        return self._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])

    def journal_mode(self) -> str:
        """The SQLite journal mode ("wal")."""
        return self._read(lambda c: str(c.execute("PRAGMA journal_mode").fetchone()[0]).lower())

    # --- records --------------------------------------------------------------------

    @staticmethod
    def _insert_record(conn: sqlite3.Connection, rec: StoredRecord, now: float) -> bool:
        cur = conn.execute(
            "INSERT OR IGNORE INTO records"
            " (cid, kind, bytes, signer, account, unit, received_at, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.cid,
                rec.kind,
                bytes(rec.data),
                bytes(rec.signer),
                None if rec.account is None else bytes(rec.account),
                rec.unit,
                rec.received_at or now,
                rec.source,
            ),
        )
        return cur.rowcount == 1

    @staticmethod
    def _check(rec: StoredRecord) -> None:
        if not isinstance(rec.cid, str) or not rec.cid:
            raise LedgerError(BAD_ARGUMENT, "a record needs a CID")
        if not isinstance(rec.data, bytes | bytearray | memoryview) or not rec.data:
            raise LedgerError(BAD_ARGUMENT, f"record {rec.cid} has no bytes")
        if rec.unit is not None and not (0 <= rec.unit < 1 << 63):
            raise LedgerError(BAD_ARGUMENT, f"record {rec.cid} has unit {rec.unit} out of range")

    def add_record(self, rec: StoredRecord) -> bool:
        """Store a validated record. Returns False (and changes nothing) if it is known."""
        self._check(rec)
        now = self._clock()
        return self._write(lambda c: self._insert_record(c, rec, now))

    def add_records(self, recs: Iterable[StoredRecord]) -> int:
        """Store several validated records in one transaction; returns how many were new."""
        batch = list(recs)
        for rec in batch:
            self._check(rec)
        now = self._clock()
        return self._write(
            lambda c: sum(self._insert_record(c, r, now) for r in batch), durable=False
        )

    def add_own_record(self, rec: StoredRecord) -> bool:
        """Store a record this node made and put it in the outbox, in one transaction.

        Returns False if the record was already stored (the outbox entry is kept as is).
        """
        self._check(rec)
        now = self._clock()

        def fn(c: sqlite3.Connection) -> bool:
            new = self._insert_record(c, rec, now)
            c.execute(
                "INSERT OR IGNORE INTO outbox (cid, bytes, created) VALUES (?, ?, ?)",
                (rec.cid, bytes(rec.data), now),
            )
            return new

        return self._write(fn)

    def has(self, cid: str) -> bool:
        """True if the record `cid` is stored."""
        return self._read(
            lambda c: (
                c.execute("SELECT 1 FROM records WHERE cid = ?", (cid,)).fetchone() is not None
            )
        )

    def get(self, cid: str) -> bytes | None:
        """The stored bytes of record `cid`, or None."""
        row = self._read(
            lambda c: c.execute("SELECT bytes FROM records WHERE cid = ?", (cid,)).fetchone()
        )
        return None if row is None else bytes(row[0])

    def get_many(self, cids: list[str]) -> list[bytes]:
        """The stored bytes of the records `cids` names, in that order (those not
        stored are left out): what a head page's bundle holds."""

        def fn(c: sqlite3.Connection) -> list[bytes]:
            found: dict[str, bytes] = {}
            for i in range(0, len(cids), 500):  # (SQLite bounds the parameters per query)
                chunk = cids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for cid, data in c.execute(
                    f"SELECT cid, bytes FROM records WHERE cid IN ({marks})", chunk
                ):
                    found[cid] = bytes(data)
            return [found[cid] for cid in cids if cid in found]

        return self._read(fn)

    def record_count(self, kind: str | None = None) -> int:
        """How many records are stored (of one kind, if given)."""
        if kind is None:
            sql, args = "SELECT COUNT(*) FROM records", ()
        else:
            sql, args = "SELECT COUNT(*) FROM records WHERE kind = ?", (kind,)
        return self._read(lambda c: c.execute(sql, args).fetchone()[0])

    def records(self, kind: str | None = None, unit: int | None = None) -> list[StoredRecord]:
        """Stored records in CID order, filtered by kind and/or unit."""
        where, args = [], []
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        if unit is not None:
            where.append("unit = ?")
            args.append(unit)
        sql = (
            "SELECT cid, kind, bytes, signer, account, unit, received_at, source FROM records"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY cid"
        )
        rows = self._read(lambda c: c.execute(sql, args).fetchall())
        return [_stored(r) for r in rows]

    def iter_bytes(self) -> Iterator[tuple[str, bytes]]:
        """(cid, bytes) of every stored record in CID order (a snapshot)."""
        rows = self._read(
            lambda c: c.execute("SELECT cid, bytes FROM records ORDER BY cid").fetchall()
        )
        for cid, data in rows:
            yield cid, bytes(data)

    def valid_records(self) -> list[Accepted]:
        """Every stored record, parsed again, as input for network.state.derive_state.

        The ledger holds only records that passed validation; one that no longer parses
        (a protocol change) is skipped rather than breaking the state.
        """
        out = []
        for cid, data in self.iter_bytes():
            signed = parse(data)
            if not isinstance(signed, Rejection):
                out.append(Accepted(record=signed, cid=cid))
        return out

    def heads_list(self) -> list[str]:
        """The sorted CIDs of every stored record (what the node's head lists; the
        node itself keeps them by page as records arrive, nodeparts/heads.PageLists)."""
        return self._read(
            lambda c: [r[0] for r in c.execute("SELECT cid FROM records ORDER BY cid")]
        )

    def missing(self, cids: Iterable[str]) -> list[str]:
        """Those of `cids` that are not stored (what to fetch after reading a peer's head)."""
        wanted = sorted(set(cids))

        def fn(c: sqlite3.Connection) -> list[str]:
            return [
                cid
                for cid in wanted
                if c.execute("SELECT 1 FROM records WHERE cid = ?", (cid,)).fetchone() is None
            ]

        return self._read(fn)

    # --- outbox ---------------------------------------------------------------------

    def outbox(self, *, pending_only: bool = True) -> list[OutboxEntry]:
        """Outbox entries, oldest first; by default only those no peer has acknowledged."""
        sql = (
            "SELECT cid, bytes, created, published_at, publish_count, acknowledged_at,"
            " acknowledged_by FROM outbox"
            + (" WHERE acknowledged_at IS NULL" if pending_only else "")
            + " ORDER BY created, cid"
        )
        rows = self._read(lambda c: c.execute(sql).fetchall())
        return [OutboxEntry(r[0], bytes(r[1]), r[2], r[3], r[4], r[5], r[6]) for r in rows]

    def outbox_count(self, *, pending_only: bool = True) -> int:
        """How many outbox entries there are (by default: not yet acknowledged)."""
        sql = "SELECT COUNT(*) FROM outbox" + (
            " WHERE acknowledged_at IS NULL" if pending_only else ""
        )
        return self._read(lambda c: c.execute(sql).fetchone()[0])

    def mark_published(self, cids: Iterable[str], at: float | None = None) -> int:
        """Record that outbox entries `cids` were (re-)announced, in one transaction (a
        batch announces up to 32); returns how many of them are in the outbox."""
        when = self._clock() if at is None else at
        wanted = list(cids)

        def fn(c: sqlite3.Connection) -> int:
            return sum(
                c.execute(
                    "UPDATE outbox SET published_at = ?, publish_count = publish_count + 1"
                    " WHERE cid = ?",
                    (when, cid),
                ).rowcount
                for cid in wanted
            )

        return self._write(fn, durable=False)

    def unacknowledged(self, created_before: float | None = None) -> list[str]:
        """The CIDs of the outbox entries no peer has acknowledged yet (only those
        created before `created_before`, when given)."""
        return self._read(lambda c: _unacknowledged(c, created_before))

    def acknowledge(self, cids: Iterable[str], peer_id: str, at: float | None = None) -> int:
        """Mark outbox entries as held by `peer_id`; returns how many became acknowledged."""
        when = self._clock() if at is None else at
        # Most pages a peer lists hold none of our unacknowledged records: a read of
        # the (short) outbox spares them a write transaction and one UPDATE per CID
        # (every page read at 32 nodes took the ledger's write lock, bench/swarm.py).
        waiting = set(self.unacknowledged())
        wanted = sorted(waiting.intersection(cids))
        if not wanted:
            return 0
        return self._write(lambda c: _acknowledge(c, wanted, peer_id, when), durable=False)

    # --- sync bookkeeping -----------------------------------------------------------

    def note_peer_head(
        self,
        peer_id: str,
        head_cid: str,
        cids: Iterable[str] | None = None,
        seen_at: float | None = None,
    ) -> int:
        """Remember `peer_id`'s latest head; if its CID list is known, acknowledge our outbox.

        Args:
            peer_id: the peer that published the head.
            head_cid: the CID of its list of record CIDs.
            cids: the list itself, when fetched; outbox entries in it become acknowledged.
            seen_at: when it was seen (default: now).

        Returns:
            How many outbox entries became acknowledged.
        """
        when = self._clock() if seen_at is None else seen_at
        listed = None if cids is None else sorted(set(cids))

        def fn(c: sqlite3.Connection) -> int:
            c.execute(
                "INSERT INTO peer_heads (peer_id, head_cid, seen_at, record_count)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(peer_id) DO UPDATE SET"
                " head_cid = excluded.head_cid, seen_at = excluded.seen_at,"
                " record_count = excluded.record_count",
                (peer_id, head_cid, when, None if listed is None else len(listed)),
            )
            return 0 if listed is None else _acknowledge(c, listed, peer_id, when)

        return self._write(fn, durable=False)

    def peer_heads(self) -> list[PeerHead]:
        """The latest head seen from each peer, by peer id."""
        rows = self._read(
            lambda c: c.execute(
                "SELECT peer_id, head_cid, seen_at, record_count FROM peer_heads ORDER BY peer_id"
            ).fetchall()
        )
        return [PeerHead(*r) for r in rows]

    # --- claims ---------------------------------------------------------------------

    def put_claim(
        self,
        claim_id: str,
        unit: int,
        node: bytes,
        account: bytes,
        expires_at: float,
        received_at: float | None = None,
        done: int = 0,
    ) -> ClaimTerms:
        """Store a claim under the renewal rule of `renewed_claim`: a known `claim_id` on
        the same unit is extended only by a renewal with more blocks `done`; on another
        unit it is replaced (the claimant moved on). The first claim of `account` on
        `unit` is remembered (claim_holds) beyond the claim itself.

        Returns:
            The terms stored (expiry, done, progress_at).
        """
        if not 0 <= unit < 1 << 63:
            raise LedgerError(BAD_ARGUMENT, f"claim for unit {unit} out of range")
        if not 0 <= done < 1 << 63:
            raise LedgerError(BAD_ARGUMENT, f"claim done {done} out of range")
        when = self._clock() if received_at is None else received_at
        node, account = bytes(node), bytes(account)

        def fn(c: sqlite3.Connection) -> ClaimTerms:
            row = c.execute(
                "SELECT unit, expires_at, done, progress_at FROM claims WHERE claim_id = ?",
                (claim_id,),
            ).fetchone()
            prior = None if row is None else ClaimTerms(*row)
            terms = renewed_claim(prior, ClaimTerms(unit, float(expires_at), done, when))
            c.execute(
                "INSERT INTO claims"
                " (claim_id, unit, node, account, expires_at, received_at, done, progress_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(claim_id) DO UPDATE SET"
                " unit = excluded.unit, expires_at = excluded.expires_at,"
                " received_at = excluded.received_at, done = excluded.done,"
                " progress_at = excluded.progress_at",
                (
                    claim_id,
                    unit,
                    node,
                    account,
                    terms.expires_at,
                    when,
                    terms.done,
                    terms.progress_at,
                ),
            )
            c.execute(
                "INSERT OR IGNORE INTO claim_holds (account, unit, first_seen) VALUES (?, ?, ?)",
                (account, unit, when),
            )
            return terms

        return self._write(fn, durable=False)

    def active_claims(self, now: float | None = None) -> list[ClaimRow]:
        """Claims that have not expired at `now`, by unit then claim id, each with its
        account's first-seen time on the unit."""
        t = self._clock() if now is None else now
        rows = self._read(
            lambda c: c.execute(
                "SELECT c.claim_id, c.unit, c.node, c.account, c.expires_at, c.received_at,"
                " c.done, c.progress_at, h.first_seen FROM claims c LEFT JOIN claim_holds h"
                " ON h.account = c.account AND h.unit = c.unit"
                " WHERE c.expires_at > ? ORDER BY c.unit, c.claim_id",
                (t,),
            ).fetchall()
        )
        return [
            ClaimRow(r[0], r[1], bytes(r[2]), bytes(r[3]), r[4], r[5], r[6], r[7], r[8])
            for r in rows
        ]

    def claim_first_seen(self, account: bytes, unit: int) -> float | None:
        """When `account`'s first claim on `unit` was seen (None: never, or forgotten)."""
        row = self._read(
            lambda c: c.execute(
                "SELECT first_seen FROM claim_holds WHERE account = ? AND unit = ?",
                (bytes(account), unit),
            ).fetchone()
        )
        return None if row is None else row[0]

    def claim_hold_units(self) -> list[int]:
        """The units some claim hold is kept for, ascending (to forget verified ones)."""
        return self._read(
            lambda c: [
                r[0] for r in c.execute("SELECT DISTINCT unit FROM claim_holds ORDER BY unit")
            ]
        )

    def forget_claim_holds(self, units: Iterable[int]) -> int:
        """Drop the first-seen times on `units` (verified: nobody needs to claim them);
        returns how many were dropped."""
        wanted = sorted({u for u in units if 0 <= u < 1 << 63})
        return self._write(
            lambda c: sum(
                c.execute("DELETE FROM claim_holds WHERE unit = ?", (u,)).rowcount for u in wanted
            )
        )

    def drop_claim(self, claim_id: str) -> bool:
        """Forget a claim (our unit is done or abandoned); False if it was not known."""
        return self._write(
            lambda c: c.execute("DELETE FROM claims WHERE claim_id = ?", (claim_id,)).rowcount == 1
        )

    def expire_claims(self, now: float | None = None) -> int:
        """Delete claims that expired at or before `now`, and claim holds older than
        CLAIM_HOLD_KEEP_S that no stored claim needs; returns how many claims."""
        t = self._clock() if now is None else now

        def fn(c: sqlite3.Connection) -> int:
            n = c.execute("DELETE FROM claims WHERE expires_at <= ?", (t,)).rowcount
            c.execute(
                "DELETE FROM claim_holds WHERE first_seen <= ? AND NOT EXISTS"
                " (SELECT 1 FROM claims WHERE claims.account = claim_holds.account"
                " AND claims.unit = claim_holds.unit)",
                (t - CLAIM_HOLD_KEEP_S,),
            )
            return n

        return self._write(fn)

    # --- rejections -----------------------------------------------------------------

    def count_rejection(
        self,
        reason: str,
        detail: str = "",
        source: str | None = None,
        at: float | None = None,
        count: int = 1,
    ) -> None:
        """Count `count` rejected records (or messages) by reason, and keep one entry
        for them in the bounded recent log.

        Held in memory and written with the others at most every REJECTION_FLUSH_S.
        """
        when = self._clock() if at is None else at
        entry = RejectionEntry(when, reason, str(detail)[:MAX_DETAIL_CHARS], source)
        with self._rej_lock:
            self._rej_counts[reason] = self._rej_counts.get(reason, 0) + count
            self._rej_log.append(entry)
            due = time.monotonic() - self._rej_flushed >= REJECTION_FLUSH_S
        if due:
            self.flush_rejections()

    def flush_rejections(self) -> None:
        """Write the rejections counted since the last flush, in one transaction."""
        with self._rej_lock:
            counts, entries = self._rej_counts, list(self._rej_log)
            self._rej_counts, self._rej_log = {}, deque(maxlen=RECENT_REJECTIONS_KEPT)
            self._rej_flushed = time.monotonic()
        if not counts:
            return

        def fn(c: sqlite3.Connection) -> None:
            c.executemany(
                "INSERT INTO rejection_counts (reason, count) VALUES (?, ?)"
                " ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
                sorted(counts.items()),
            )
            c.executemany(
                "INSERT INTO rejection_log (at, reason, detail, source) VALUES (?, ?, ?, ?)",
                [(e.at, e.reason, e.detail, e.source) for e in entries],
            )
            c.execute(
                "DELETE FROM rejection_log WHERE id <= (SELECT MAX(id) FROM rejection_log) - ?",
                (RECENT_REJECTIONS_KEPT,),
            )

        try:
            self._write(fn)
        except LedgerError:
            with self._rej_lock:  # counted again next time: nothing is dropped
                for reason, n in counts.items():
                    self._rej_counts[reason] = self._rej_counts.get(reason, 0) + n
                self._rej_log.extendleft(reversed(entries))
            raise

    def rejection_counts(self) -> dict[str, int]:
        """Rejections so far, by reason code (written and not yet written)."""
        # fetchall inside _read: the rows must be read under the ledger's lock
        rows = self._read(
            lambda c: c.execute(
                "SELECT reason, count FROM rejection_counts ORDER BY reason"
            ).fetchall()
        )
        counts = dict(rows)
        with self._rej_lock:
            for reason, n in self._rej_counts.items():
                counts[reason] = counts.get(reason, 0) + n
        return dict(sorted(counts.items()))

    def rejected_total(self) -> int:
        """All rejections so far."""
        return sum(self.rejection_counts().values())

    def recent_rejections(self, limit: int = RECENT_REJECTIONS_KEPT) -> list[RejectionEntry]:
        """The newest rejections first (at most RECENT_REJECTIONS_KEPT are kept)."""
        limit = max(0, min(int(limit), RECENT_REJECTIONS_KEPT))
        with self._rej_lock:
            held = list(reversed(self._rej_log))
        rows = self._read(
            lambda c: c.execute(
                "SELECT at, reason, detail, source FROM rejection_log ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        )
        return (held + [RejectionEntry(*r) for r in rows])[:limit]


def _stored(row: tuple) -> StoredRecord:
    cid, kind, data, signer, account, unit, received_at, source = row
    return StoredRecord(
        cid=cid,
        kind=kind,
        data=bytes(data),
        signer=bytes(signer),
        account=None if account is None else bytes(account),
        unit=unit,
        received_at=received_at,
        source=source,
    )


def _unacknowledged(c: sqlite3.Connection, created_before: float | None = None) -> list[str]:
    sql = "SELECT cid FROM outbox WHERE acknowledged_at IS NULL"
    if created_before is None:
        return [row[0] for row in c.execute(sql)]
    return [row[0] for row in c.execute(sql + " AND created < ?", (created_before,))]


def _acknowledge(c: sqlite3.Connection, cids: list[str], peer_id: str, when: float) -> int:
    done = 0
    for cid in cids:
        done += c.execute(
            "UPDATE outbox SET acknowledged_at = ?, acknowledged_by = ?"
            " WHERE cid = ? AND acknowledged_at IS NULL",
            (when, peer_id, cid),
        ).rowcount
    return done
