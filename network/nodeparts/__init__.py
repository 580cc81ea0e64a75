"""The node's jobs, one module each, behind the `network.node.Node` facade.

- `ratelimit.py`: per-peer message rate limits (token buckets, bounded);
- `evidence.py`: others' evidence fetched ahead of the compute loop.

Each part owns its data and its lock; `Node` wires them together.
"""
