"""What an outside team has of sitewatch: a wheel, its console script, topics and tables.

Nothing here imports sitewatch: the wheel is built from the repository and installed
into a virtualenv of its own, processes are started through its `sitewatch` script,
records are plain JSON sent and read with aiokafka, rows are read with pymysql.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pymysql
import pymysql.cursors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import murmur2

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements" / "lock.txt"
#: what a source tree copy leaves out: local state, builds, caches, the tests themselves
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    ".sitewatch",
    "__pycache__",
    ".*_cache",
    "tests",
    "bench",
)
#: setuptools' complaints about the package configuration (the cause of issue 10's noise)
BUILD_WARNINGS = re.compile(r"SetuptoolsDeprecationWarning|_Warning:|is absent from the `packages`")

T = TypeVar("T")


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a stranger's shell: no SITEWATCH_* or virtualenv of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SITEWATCH_", "PYTHON", "VIRTUAL_ENV", "PYTEST"))
    }
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p
    )
    return {**env, **extra}


# -- the installed package ------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    venv: Path
    wheel: Path
    build_log: str

    @property
    def sitewatch(self) -> str:
        return str(self.venv / "bin" / "sitewatch")

    @property
    def package_dir(self) -> Path:
        [found] = self.venv.glob("lib/python*/site-packages/sitewatch")
        return found

    def schema(self, name: str) -> dict[str, Any]:
        """A JSON Schema file as shipped inside the installed package."""
        loaded: dict[str, Any] = json.loads(
            (self.package_dir / "streams" / "schemas" / name).read_text("utf-8")
        )
        return loaded


#: what building the wheel needs (pyproject's build-system), kept with the dependencies
BUILD_REQUIRES = "setuptools>=77"


class Wheelhouse:
    """The locked dependencies (and the build backend) as wheels, downloaded once per
    lock into a cache folder: this machine's index answers without cache headers, so
    pip alone would fetch every package again on every run."""

    def __init__(self, env: dict[str, str]) -> None:
        digest = hashlib.sha256(LOCK.read_bytes()).hexdigest()[:16]
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        self.path = cache / "sitewatch" / "wheelhouse" / digest
        self.env = env
        self.complete = (self.path / ".complete").exists()

    def pip(self, *args: str, python: Path | None = None) -> None:
        target = ["--python", str(python)] if python else []
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--disable-pip-version-check", *target, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=900,
        )
        assert done.returncode == 0, (args, done.stdout[-3000:], done.stderr[-3000:])

    @property
    def sources(self) -> list[str]:
        """Offline from the house once it is complete; from the index until then."""
        return ["--no-index", "--find-links", str(self.path)] if self.complete else []

    def fill(self, wheel: Path) -> None:
        if self.complete:
            return
        self.pip("download", "--quiet", "-c", str(LOCK), "-d", str(self.path), str(wheel))
        self.pip("download", "--quiet", "--no-deps", "-d", str(self.path), BUILD_REQUIRES)
        for built in self.path.glob("sitewatch-*.whl"):
            built.unlink()  # the project itself is always the fresh build
        (self.path / ".complete").touch()


def build_and_install(base: Path) -> Installed:
    """Build the wheel from a copy of the source tree; install it into a new virtualenv
    with exactly the locked dependencies (`pip install -c requirements/lock.txt`)."""
    src, wheels, venv = base / "src", base / "wheels", base / "venv"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    env = clean_env()
    house = Wheelhouse(env)
    pip_wheel = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel"]
    build = subprocess.run(
        [*pip_wheel, "--no-deps", *house.sources, "-v", "-w", str(wheels), str(src)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    [wheel] = wheels.glob("sitewatch-*.whl")
    house.fill(wheel)
    house.complete = True
    # no pip inside (ensurepip alone takes ~15 s): this interpreter's pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    house.pip(
        "install",
        "--quiet",
        "--no-compile",
        *house.sources,
        "-c",
        str(LOCK),
        str(wheel),
        python=venv / "bin" / "python",
    )
    return Installed(venv, wheel, build.stdout + build.stderr)


# -- processes --------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def spawn(
    installed: Installed, name: str, argv: list[str], env: dict[str, str], logs: Path
) -> Process:
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [installed.sitewatch, *argv],
            env=clean_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=logs,
            start_new_session=True,
        )
    return Process(name, proc, log)


def run_cli(installed: Installed, argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [installed.sitewatch, *argv],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done.stdout


def start_broker(installed: Installed, logs: Path) -> tuple[Process, str]:
    """`sitewatch broker`: the bundled Tansu broker; its first line is the address."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "broker.log"
    out = log.open("wb")
    proc = subprocess.Popen(
        [installed.sitewatch, "broker"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=out,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    assert re.fullmatch(r"127\.0\.0\.1:\d+", line), (line, log.read_text())
    return Process("broker", proc, log), line


# -- time and records -------------------------------------------------------------------


def stamp(ms: int, style: int = 0) -> str:
    """ISO-8601 UTC as producers of other teams write it: with milliseconds and `Z`
    (style 0), with `+00:00` (1), or in whole seconds when that is exact (2)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    if style == 1:
        return moment.isoformat(timespec="milliseconds")
    if style == 2 and ms % 1000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def canonical(ms: int) -> str:
    """How sitewatch writes a time (what its transitions carry)."""
    return stamp(ms, 0)


def naive(ms: int) -> datetime:
    """A time as MySQL's DATETIME(3) column returns it (naive UTC)."""
    return (datetime(1970, 1, 1) + timedelta(milliseconds=ms)).replace(tzinfo=None)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def key(site_id: int) -> bytes:
    return str(site_id).encode()


def partition_of(site_id: int, partitions: int) -> int:
    """Where the default partitioner (every Kafka client's) puts a site's records."""
    digest: int = murmur2(key(site_id))
    return (digest & 0x7FFFFFFF) % partitions


class SiteIds:
    """Site ids on partitions of their own, so one scenario's stream time (which jumps
    when a scenario drives a timeout through `observed_at`) never reaches another's."""

    def __init__(self, partitions: int, start: int) -> None:
        self.partitions = partitions
        self.next = start
        self.taken: set[int] = set()

    def isolated(self, count: int = 1) -> list[int]:
        """`count` site ids on one partition that no other caller gets."""
        while True:
            first = self.next
            self.next += 1
            part = partition_of(first, self.partitions)
            if part in self.taken:
                continue
            self.taken.add(part)
            ids = [first]
            candidate = self.next
            while len(ids) < count:
                if partition_of(candidate, self.partitions) == part:
                    ids.append(candidate)
                candidate += 1
            return ids

    def shared(self, count: int, avoid: Iterable[int] = ()) -> list[int]:
        """Ids on partitions no isolated scenario uses (the bulk of concurrent sites)."""
        avoided = self.taken | set(avoid)
        out: list[int] = []
        candidate = 500_000
        while len(out) < count:
            if partition_of(candidate, self.partitions) not in avoided:
                out.append(candidate)
            candidate += 1
        return out


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4()}"


# -- Kafka, as another team's programs use it -------------------------------------------


async def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 60) -> list[int]:
    """The partitions of `topic` once sitewatch has created it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except Exception:
            assert time.monotonic() < deadline, f"no broker at {bootstrap}"
            await asyncio.sleep(0.5)
    try:
        # list first: describing (a metadata request) would auto-create the topic on
        # Tansu with its default partition count, before sitewatch creates it
        while topic not in await admin.list_topics():
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(0.3)
        while True:
            described = await admin.describe_topics([topic])
            parts = sorted(
                p["partition"] for t in described if not t["error_code"] for p in t["partitions"]
            )
            if parts:
                return parts
            assert time.monotonic() < deadline, f"topic {topic} never appeared"
            await asyncio.sleep(0.3)
    finally:
        await admin.close()


class Producer:
    """A plain aiokafka producer sending JSON values keyed by the decimal site id."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")

    async def start(self) -> Producer:
        await self._producer.start()
        return self

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, site_id: int | bytes | None, value: Any) -> None:
        """`value`: a dict (sent as JSON), raw bytes, or None (a tombstone)."""
        if isinstance(value, dict | list):
            body: bytes | None = json.dumps(value).encode()
        else:
            body = value
        k = key(site_id) if isinstance(site_id, int) else site_id
        await self._producer.send_and_wait(topic, body, key=k)

    async def send_many(self, rows: Iterable[tuple[str, int, Any]]) -> None:
        """Many records at once, as a busy producer does (batched, not awaited one by one)."""
        futures = [
            await self._producer.send(topic, json.dumps(value).encode(), key=key(site_id))
            for topic, site_id, value in rows
        ]
        await asyncio.gather(*futures)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        return json.loads(self.value or b"null")


class Follower:
    """Reads topics from their beginning for the whole session (no consumer group),
    keeping every record; the tests wait on what has arrived."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.records: dict[str, list[Record]] = defaultdict(list)
        self.arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._on_record: list[Callable[[Record], Awaitable[None] | None]] = []

    def on_record(self, callback: Callable[[Record], Awaitable[None] | None]) -> None:
        self._on_record.append(callback)

    async def start(self) -> Follower:
        tps = [
            TopicPartition(topic, p)
            for topic in self.topics
            for p in await topic_partitions(self.bootstrap, topic)
        ]
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,  # Tansu answers an idle fetch only after the wait
        )
        await consumer.start()
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._run(consumer))
        return self

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                for tp, msgs in batches.items():
                    for m in msgs:
                        rec = Record(tp.topic, tp.partition, m.offset, m.key, m.value)
                        self.records[tp.topic].append(rec)
                        for callback in self._on_record:
                            outcome = callback(rec)
                            if outcome is not None:
                                await outcome
                if batches:
                    self.arrived.set()
        finally:
            await consumer.stop()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def of(self, topic: str, site_id: int | None = None) -> list[Record]:
        recs = self.records.get(topic, [])
        if site_id is None:
            return list(recs)
        return [r for r in recs if r.key == key(site_id)]

    async def wait(
        self, check: Callable[[], T | None], what: str, timeout_s: float = 30, logs: str = ""
    ) -> T:
        """Until `check()` gives something truthy (returned), or fail saying what."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._task is None or not self._task.done(), self._task.exception()
            found = check()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{logs}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.2)


# -- MySQL ------------------------------------------------------------------------------


@dataclass
class Database:
    name: str
    host: str = "127.0.0.1"
    port: int = 3306

    @property
    def url(self) -> str:
        return f"mysql+asyncmy://root@{self.host}:{self.port}/{self.name}"

    def connect(self, database: bool = True) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user="root",
            password="",
            database=self.name if database else None,
            autocommit=True,
            cursorclass=pymysql.cursors.DictCursor,
        )

    def query(self, sql: str, *args: object) -> list[dict[str, Any]]:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def execute(self, sql: str, *args: object) -> int:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                return int(cur.execute(sql, args))
        finally:
            conn.close()

    def create(self) -> None:
        conn = self.connect(database=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
        finally:
            conn.close()

    def drop(self) -> None:
        conn = self.connect(database=False)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name}")
        finally:
            conn.close()

    async def wait(
        self,
        sql: str,
        *args: object,
        until: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout_s: float = 30,
        what: str = "",
        logs: Callable[[], str] = lambda: "",
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = await asyncio.to_thread(self.query, sql, *args)
            if until(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or sql}: {rows}\n{logs()}")
            await asyncio.sleep(0.2)


@dataclass
class Logs:
    """Tails of the processes' logs, for failure messages."""

    processes: list[Process] = field(default_factory=list)

    def __call__(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(1500)}" for p in self.processes)
