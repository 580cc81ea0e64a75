"""Several headless nodes in one process, for bench/swarm.py --per-process K.

    .venv/bin/python bench/swarm_host.py SPEC.json

SPEC is a JSON list with one entry per node: the arguments `main.py node` would
take (each node its own profile, listen port, peers and status file). The embedded
kubo library keeps a registry of nodes keyed by repo path, so one process can run
several (network/ipfs/embedded.py); they share one Python interpreter, one Go
runtime and the library's mapped code, which is what lets a 2-core, 24 GiB machine
run 50 and more.

Each node is started as `main.py node` starts one (network/node_commands.py:
`prepare_node`, `start_headless`), one after the other, and computes on its own
thread. SIGTERM or SIGINT stops every node between batches and the process exits 0
once all have closed; SIGUSR1 and SIGUSR2 pause and resume every node's computing
(`--paused` in a node's arguments starts it paused). A node that fails to start
ends the process with exit 1 (the harness then reports the host as not started).
kill -9 ends all its nodes at once, which is how the harness's churn treats a host.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import main as hailstone_main  # noqa: E402
from network import logsetup  # noqa: E402
from network.node_commands import (  # noqa: E402
    STOP_DEADLINE_S,
    STOP_SIGNALS,
    HeadlessNode,
    NodeStartError,
    arm_pause_signals,
    arm_stop_deadline,
    prepare_node,
    start_headless,
)

# How long the main thread waits between looks at the stop flag (signals interrupt it).
WAKE_S = 1.0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: swarm_host.py SPEC.json", file=sys.stderr)
        return 2
    specs = json.loads(Path(argv[0]).read_text())
    parser = hailstone_main.build_parser(("network.node_commands",))
    node_args = [parser.parse_args(["node", *spec]) for spec in specs]
    logsetup.configure(level="warning")
    stop = threading.Event()
    started: list[HeadlessNode] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not stop.is_set():  # as `main.py node`: honoured within STOP_DEADLINE_S
            arm_stop_deadline(STOP_DEADLINE_S)
        stop.set()
        for h in started:
            h.runner.stop()

    def take_signals_back() -> None:
        # The embedded kubo takes SIGINT/SIGTERM as each node starts (see cmd_node).
        for s in STOP_SIGNALS:
            signal.signal(s, on_signal)

    take_signals_back()
    arm_pause_signals(lambda: [h.runner for h in started])
    threads: list[threading.Thread] = []
    code = 0
    try:
        for args in node_args:
            if stop.is_set():
                break
            prepared = prepare_node(args, configure_logging=False)
            headless = start_headless(
                prepared, status_file=args.status_file, after_ipfs_open=take_signals_back
            )
            take_signals_back()
            arm_pause_signals(lambda: [h.runner for h in started])  # kubo may take them too
            if args.paused:
                headless.runner.pause()
            started.append(headless)
            t = threading.Thread(target=headless.runner.run, name=f"node-{len(started)}",
                                 daemon=True)
            t.start()
            threads.append(t)
            if stop.is_set():
                headless.runner.stop()
        while not stop.is_set() and any(t.is_alive() for t in threads):
            stop.wait(WAKE_S)
    except NodeStartError as exc:
        print(f"swarm_host: {exc}", file=sys.stderr)
        code = 1
    finally:
        began = time.monotonic()
        for h in started:
            h.runner.stop()
        for t in threads:
            t.join()
        runners_s = time.monotonic() - began
        # Close every node at once: each close waits for its own threads.
        closers = [threading.Thread(target=h.close, daemon=True) for h in started]
        for c in closers:
            c.start()
        for c in closers:
            c.join()
        print(f"swarm_host: {len(started)} nodes stopped: compute loops {runners_s:.1f} s, "
              f"nodes closed {time.monotonic() - began - runners_s:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    from network.ipfs.goruntime import ensure_go_environment

    ensure_go_environment()  # the Go runtime's settings, as `main.py node` has them
    sys.exit(main(sys.argv[1:]))
