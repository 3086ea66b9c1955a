"""`sitewatch broker`: the bundled Tansu broker in the foreground (dev, tests).

Prints the bootstrap address once it accepts connections; SIGINT/SIGTERM stop it (exit
0). A broker that exits by itself ends the command with its exit code (1 when none).
"""

from __future__ import annotations

import argparse
import signal
import time

from sitewatch.devbroker import Broker
from sitewatch.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")


def run(args: argparse.Namespace, conf: Settings) -> int:
    broker = Broker(port=args.port).start()
    print(broker.bootstrap, flush=True)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        code = broker.process.poll() if broker.process else 0
        broker.stop()
    return 0 if stopping else (code or 1)
