"""Hailstone network layer: identity, records, ledger, state, IPFS. Qt-free."""
