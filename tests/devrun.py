"""`sitewatch dev` as the tests run it in the background: bundled broker, SQLite, no UI, its
output in a file the test reads as it goes; stopped with Ctrl-C (SIGINT to its group)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.kafka_util import SITEWATCH


@dataclass
class Dev:
    proc: asyncio.subprocess.Process
    out: Path

    def text(self) -> str:
        return self.out.read_text()

    async def line(self, pattern: str, timeout_s: float = 60) -> re.Match[str]:
        """The first line of the output matching `pattern`, waiting for it while dev runs."""
        deadline = time.monotonic() + timeout_s
        while (found := re.search(pattern, self.text(), re.M)) is None:
            assert self.proc.returncode is None and time.monotonic() < deadline, self.text()
            await asyncio.sleep(0.5)
        return found


@asynccontextmanager
async def running_dev(base: Path, duration_s: int) -> AsyncIterator[Dev]:
    """Afterwards, checks the api child stopped cleanly."""
    env = {**os.environ, "SITEWATCH_STATE_DIR": str(base / "state"), "SITEWATCH_PARTITIONS": "4"}
    env.pop("SITEWATCH_API_LISTEN", None)
    out_path = base / "dev.out"
    with out_path.open("w") as out:
        proc = await asyncio.create_subprocess_exec(
            *(SITEWATCH, "dev", "--no-ui", "--duration", str(duration_s), "--interval", "5"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Dev(proc, out_path)
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, 2)
        await asyncio.wait_for(proc.wait(), 60)
    assert re.search(r"^stopped +api pid=\d+ exited 0$", out_path.read_text(), re.M)
