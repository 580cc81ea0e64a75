"""The node's jobs, one module each, behind the `network.node.Node` facade.

- `ratelimit.py`: per-peer message rate limits (token buckets, bounded);
- `backoff.py`: failed fetches and when to try them again;
- `heads.py`: our head's pages, and how far we follow each peer's head;
- `evidence.py`: others' evidence fetched ahead of the compute loop.

Still inside `Node` (network/node.py): the record store and validation, fetching
heads and records, publishing and the outbox, claims and the unit planner, the
trust duties.

Each part owns its data and its lock; `Node` wires them together.
"""
