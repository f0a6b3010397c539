"""The gateway process: a FIX 4.4 acceptor between clients and the router.

    python -m procs.gateway.main --profile dev --name gw1

SIGTERM or SIGINT closes intake (new orders and replaces refused, cancels taken), delivers
the reports of what is in flight for up to ``stop_grace_s``, logs every session out and exits
0; a second signal (half a second or more after the first: one sooner is the
parent-death signal told again, once per thread of the parent) skips the wait.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from config import load_profile
from procs.common import gc_policy
from procs.common.units import exit_if_other_units
from procs.gateway.server import GatewayServer


async def serve(profile: str, name: str) -> None:
    cfg = load_profile(profile)
    exit_if_other_units(cfg, f"gateway {name}")  # a unit restarted on an edited profile
    server = GatewayServer(cfg, name)
    gc_policy.settle(cfg.gc)  # recovered (sessions, order memory): never walked again
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    await server.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ringex FIX gateway process")
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    parser.add_argument("--name", required=True, help="the [[gateways]] name to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvloop.run(serve(args.profile, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
