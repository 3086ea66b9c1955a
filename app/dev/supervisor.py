"""The child processes of `sitewatch dev`: started, watched and stopped as whole groups.

Each child runs in a process group of its own, which is signalled whole, and a child
whose parent dies gets SIGTERM from the kernel (PR_SET_PDEATHSIG), so nothing is left
behind even when `sitewatch dev` itself is SIGKILLed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sitewatch.devbroker import free_port, tansu_command, tansu_env

#: seconds a child gets to stop on SIGTERM before its group is SIGKILLed
STOP_GRACE_S = 20.0


class ChildRole(enum.StrEnum):
    """What a child process of `sitewatch dev` is."""

    BROKER = "broker"
    WORKER = "worker"
    SINK = "sink"
    PROBE = "probe"
    VERIFIER = "verifier"
    NOTIFY = "notify"
    API = "api"


def cli(*argv: str) -> list[str]:
    """This interpreter running the `sitewatch` CLI with `argv`."""
    return [sys.executable, "-m", "sitewatch.cli", *argv]


@dataclass(slots=True)
class Child:
    name: str
    role: ChildRole
    argv: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None
    expected_exit: bool = False
    #: the program; default: this interpreter running the `sitewatch` CLI
    program: list[str] = field(default_factory=cli)
    #: its own environment, when it differs from the other children's
    env: dict[str, str] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def status(self) -> str:
        if self.proc is None:
            return "not started"
        if self.proc.returncode is None:
            return "running"
        return f"exited {self.proc.returncode}"

    @property
    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


async def spawn(child: Child, env: dict[str, str]) -> None:
    child.log.parent.mkdir(parents=True, exist_ok=True)
    with child.log.open("ab") as out:
        child.proc = await asyncio.create_subprocess_exec(
            *child.program,
            *child.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            # own process group: the terminal's Ctrl-C reaches only us, and we stop the
            # children in order and signal each group whole
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop_children(children: Sequence[Child], grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM every group; SIGKILL the ones still alive after `grace_s`."""
    running = [c for c in children if c.proc is not None and c.proc.returncode is None]
    for child in running:
        child.expected_exit = True
        assert child.proc is not None
        _signal_group(child.proc.pid, signal.SIGTERM)

    async def wait(child: Child) -> None:
        assert child.proc is not None
        try:
            await asyncio.wait_for(child.proc.wait(), grace_s)
        except TimeoutError:
            _signal_group(child.proc.pid, signal.SIGKILL)
            await child.proc.wait()

    await asyncio.gather(*(wait(c) for c in running))
    # anything a child started in its group goes too
    for child in children:
        if child.proc is not None:
            _signal_group(child.proc.pid, signal.SIGKILL)


async def start_broker(logs: Path, env: dict[str, str], timeout_s: float = 20.0) -> Child:
    """The bundled Tansu broker as a child like the others (own group, dies with us),
    on a free loopback port with in-memory storage; returns once it accepts connections.
    Its name is its bootstrap address."""
    port = free_port()
    command = tansu_command(port)
    broker = Child(
        f"127.0.0.1:{port}", ChildRole.BROKER, command[1:], logs / "broker.log", program=command[:1]
    )
    await spawn(broker, tansu_env(env))
    deadline = time.monotonic() + timeout_s
    while True:
        assert broker.proc is not None
        if broker.proc.returncode is not None:
            raise RuntimeError(f"tansu broker exited with {broker.proc.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return broker
        except OSError:
            if time.monotonic() > deadline:
                await stop_children([broker])
                raise RuntimeError(f"tansu broker not ready on port {port}") from None
            await asyncio.sleep(0.05)
