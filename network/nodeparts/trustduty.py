"""The trust protocol's periodic duties (PROTOCOL §11, with NodeConfig.trust): reveal
our sealed work records once they are due, and publish beacon rounds when this is a
beacon account.

`submit_unit` (planner.py) publishes only a commit and keeps the signed work record
as a file (`reveal_path`); `tick()` reveals it once one of our drawn checkers
committed too, or once a reporter that drew us revealed a root listing our commit
(T4). Runs on the network loop.

Lock discipline: no lock of its own; `_beacon_*` are touched only by `tick()` on
the network loop. `roles` (unit -> the reporter we compute it to check) is the
planner's dict, written by the compute loop: single reads and writes of a dict
are atomic, and a missing entry only changes the order of listed commits.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from network import codec
from network.nodeparts.services import Services
from network.nodeparts.store import RecordStore
from network.records import (
    MAX_BEACON_LISTED,
    MAX_SEEN_COMMITS,
    BeaconRecord,
    SignedRecord,
    WorkRecord,
)
from network.rejection import Rejection
from network.state import NetworkState
from network.trust import TrustPolicy


def reveal_path(data_dir: Path, network_name: str, unit: int) -> Path:
    """Where our sealed work record of `unit` waits for its reveal."""
    return data_dir / "reveals" / f"{network_name}-unit{unit}.rec"


class TrustDuty:
    """Reveals due work records; publishes beacon rounds for a beacon account.

    Args:
        services: identity, clock and events.
        store: the records held (commits, works, beacons) and the state.
        add_own: stores and announces one of our records (Publisher.add_own).
        policy: the verification protocol's root of trust.
        data_dir: the profile's data folder (reveals live under it).
        roles: unit -> the reporter we compute it to check (the planner's).
    """

    def __init__(
        self,
        services: Services,
        store: RecordStore,
        add_own: Callable[[SignedRecord], str],
        *,
        policy: TrustPolicy,
        data_dir: Path,
        roles: Mapping[int, bytes],
    ) -> None:
        self._services = services
        self._store = store
        self._add_own = add_own
        self._policy = policy
        self._data_dir = data_dir
        self._roles = roles
        self._beacon_listed: set[str] = set()
        self._beacon_round = 0

    def reveal_path(self, unit: int) -> Path:
        return reveal_path(self._data_dir, self._services.params.name, unit)

    def tick(self) -> None:
        """Reveal what is due, and publish a beacon round if this is a beacon account."""
        services = self._services
        st = self._store.state()
        commits: dict[int, dict[bytes, str]] = {}
        for cid, c in self._store.by_kind("commit"):
            commits.setdefault(c.unit, {}).setdefault(c.account, cid)
        works: dict[int, list[WorkRecord]] = {}
        for _cid, w in self._store.by_kind("work"):
            works.setdefault(w.unit, []).append(w)
        folder = self.reveal_path(0).parent
        for path in (
            sorted(folder.glob(f"{services.params.name}-unit*.rec")) if folder.is_dir() else ()
        ):
            parsed = codec.parse(path.read_bytes())
            if isinstance(parsed, Rejection) or not isinstance(parsed.record, WorkRecord):
                continue
            template = parsed.record
            unit = template.unit
            due = self.reveal_due(st, template, commits.get(unit, {}), works.get(unit, []))
            if due is None:
                continue
            record = dataclasses.replace(template, seen_commits=due, created=services.now())
            cid = self._add_own(services.sign(record))
            services.event("published", f"unit {unit} revealed", cid)
            path.unlink(missing_ok=True)
        if services.account_pub in self._policy.beacons:
            self._publish_beacon(commits)

    def reveal_due(
        self,
        st: NetworkState,
        template: WorkRecord,
        commits: dict[bytes, str],
        works: list[WorkRecord],
    ) -> tuple[str, ...] | None:
        """The commits to list if our reveal of this unit is due now, else None: due once
        one of our drawn checkers committed, or once a reporter that drew us (or the one
        we check) revealed our root listing our commit (T4)."""
        me = self._services.account_pub
        unit, k = template.unit, self._policy.check_rank
        mine = commits.get(me)
        if mine is None or st.trust is None:
            return None
        others = {a: c for a, c in commits.items() if a != me}
        drawn = st.trust.ranking(unit, b"check", (me,))[:k]
        waiting = [
            w.account
            for w in works
            if w.account != me
            and w.root == template.root
            and mine in w.seen_commits
            and me in st.trust.ranking(unit, b"check", (w.account,))[:k]
        ]
        if not (waiting or any(a in others for a in drawn)):
            return None
        # The earliest reporters waiting on us first (copies of their root come later
        # and must not crowd our drawn partners out of the listed commits).
        earliest = {w.account: w.created for w in works}
        waiting = sorted(set(waiting), key=lambda a: (earliest[a], a))[:2]
        partners = [*waiting, self._roles.get(unit), *drawn]
        first = list(dict.fromkeys(others[a] for a in partners if a in others))
        rest = sorted(c for c in others.values() if c not in first)
        return tuple(sorted(dict.fromkeys([*first, *rest][:MAX_SEEN_COMMITS])))

    def _publish_beacon(self, commits: dict[int, dict[bytes, str]]) -> None:
        """List every commit and work not yet listed, MAX_BEACON_LISTED per round."""
        services = self._services
        if not self._beacon_round:
            beacons = self._store.by_kind("beacon")
            mine = [b.round for _c, b in beacons if b.account == services.account_pub]
            self._beacon_round = max(mine, default=0)
            for _c, b in beacons:
                self._beacon_listed.update(b.listed)
        fresh = sorted(
            {c for per in commits.values() for c in per.values()}
            | {c for c, _w in self._store.by_kind("work")}
        )
        fresh = [c for c in fresh if c not in self._beacon_listed]
        while fresh:
            chunk, fresh = fresh[:MAX_BEACON_LISTED], fresh[MAX_BEACON_LISTED:]
            self._beacon_round += 1
            rec = BeaconRecord(
                round=self._beacon_round,
                value=os.urandom(32),
                listed=tuple(chunk),
                node=services.node_pub,
                account=services.account_pub,
                created=services.now(),
            )
            self._add_own(services.sign(rec))
            self._beacon_listed.update(chunk)
