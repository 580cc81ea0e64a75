"""Hailstone: verify the Collatz conjecture beyond 2^71.

With no arguments this opens the desktop app; sub-commands serve headless use.
Run `python main.py --help` for the list.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Modules that contribute sub-commands through a `register(subparsers)` function.
# The import of each happens here, so a missing optional part (say, the GUI on a
# server without Qt) costs only its own commands.
COMMAND_MODULES = (
    "engine.commands",
    "network.commands",
    "network.node_commands",
    "network.release_commands",
    "network.service_commands",
    "network.simulate",
    "app.commands",
)
# Sub-commands that one module serves alone: starting one of these imports only
# that module (the network and app modules cost about 0.2 s of a CLI start).
FAST_COMMANDS = {"verify": "engine.commands", "bench": "engine.commands"}


def build_parser(modules: tuple[str, ...] = COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hailstone",
        description="Hailstone: a volunteer client that verifies the Collatz conjecture "
        "beyond 2^71. With no sub-command it opens the desktop app.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the program is not present
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    fast = FAST_COMMANDS.get(argv[0]) if argv else None
    if fast == "engine.commands":
        # verify and bench read the production sieve: its SHA-256 check (0.18 s)
        # starts now, on a thread, while numpy and the engine import.
        from engine.sieve_file import start_early_production

        start_early_production()
    parser = build_parser((fast,) if fast else COMMAND_MODULES)
    args = parser.parse_args(argv)
    if args.command is None:
        gui = getattr(args, "gui_main", None)
        if gui is None:
            try:
                from app.commands import run_gui as gui
            except ModuleNotFoundError:
                parser.print_help()
                return 0
        return gui(args)
    return args.func(args)


# Commands that run the embedded kubo for long: its Go runtime takes settings only
# from the environment the process starts with (network/ipfs/goruntime.py).
LONG_RUNNING_KUBO = {None, "node"}


if __name__ == "__main__":
    if (sys.argv[1] if len(sys.argv) > 1 else None) in LONG_RUNNING_KUBO:
        from network.ipfs.goruntime import ensure_go_environment

        ensure_go_environment()  # may run this program again, with them set
    code = main()
    if sys.argv[1:2] and sys.argv[1] in FAST_COMMANDS:
        # verify and bench have closed their backend and printed their result: skip
        # the interpreter's teardown (about 0.1 s freeing numba's and LLVM's objects).
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
