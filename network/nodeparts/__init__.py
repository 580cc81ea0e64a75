"""The node's jobs, one module each, behind the `network.node.Node` facade.

- `store.py` (RecordStore): the records held, validation, pending and refused CIDs,
  the derived state;
- `sync.py` (Sync): gossip in (rate-limited), peers' claims, fetcher threads,
  following peers' heads;
- `publisher.py` (Publisher): our records through the outbox, our head, our claims,
  our evidence files;
- `planner.py` (Planner): the next unit to compute, claims, `submit_unit`;
- `checks.py` (BlockChecks): spot-checks, drawn audits, dispute confirmations,
  candidate re-checks, `submit_block`;
- `trustduty.py` (TrustDuty): reveals due and beacon rounds (PROTOCOL §11);
- `ratelimit.py`: per-peer message rate limits (token buckets, bounded);
- `backoff.py`: failed fetches and when to try them again;
- `heads.py`: our head's pages, and how far we follow each peer's head;
- `blockgc.py` (BlockCollector): head objects and peers' evidence no longer needed,
  removed from the IPFS store after a grace time;
- `evidence.py`: others' evidence fetched ahead of the compute loop;
- `services.py` (Services): identity, the ledger and IPFS, the clock, events;
- `config.py` (NodeConfig) and `status.py` (NodeStatus, NodeEvent): the node's types.

Each part owns its data and its lock and gets its collaborators passed in; no
part holds the whole `Node`, which wires them together and keeps the network
loop (`poll`). Module docstrings state each part's lock discipline.
"""
