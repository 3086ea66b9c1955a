"""`sitewatch dev`: the whole system on one machine, with no setup.

Starts the bundled Tansu broker on a free port, migrates a SQLite database under the
state dir, serves the demo fleet (or monitors the URLs of `--sites FILE`), publishes
their `sites` records, and runs a probe, two verifiers, the worker and the sink as
child processes. A live view (rich) shows each site's state and the transitions as
they happen. Ctrl-C / SIGTERM stop every child: each runs in a process group of its
own, which is signalled whole, and a child whose parent dies gets SIGTERM from the
kernel (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import enum
import json
import logging
import os
import secrets
import shutil
import signal
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sitewatch import crypto
from sitewatch.settings import Settings

#: the two verifier locations of the dev setup (SITEWATCH_VERIFIERS for the worker)
VERIFIERS: tuple[str, ...] = ("eu", "us")
#: seconds a child gets to stop on SIGTERM before its group is SIGKILLed
STOP_GRACE_S = 20.0
#: how often the plain (not a terminal) output prints a status line
STATUS_EVERY_S = 15.0


class Role(enum.StrEnum):
    """The child processes of `sitewatch dev`."""

    BROKER = "broker"
    WORKER = "worker"
    SINK = "sink"
    PROBE = "probe"
    VERIFIER = "verifier"
    NOTIFY = "notify"
    API = "api"


@dataclass(frozen=True, slots=True)
class DevSite:
    """One monitored site: its `sites` record fields and how the view labels it."""

    site_id: int
    name: str
    url: str
    note: str = ""
    https: bool = False
    maintenance: tuple[tuple[datetime, datetime], ...] = ()

    def in_maintenance(self, at: datetime) -> bool:
        return any(start <= at < end for start, end in self.maintenance)


@dataclass(slots=True)
class Child:
    name: str
    role: Role
    argv: list[str]
    log: Path
    proc: asyncio.subprocess.Process | None = None
    expected_exit: bool = False
    #: the program; default: this interpreter running the `sitewatch` CLI
    program: list[str] = field(default_factory=lambda: [sys.executable, "-m", "sitewatch.cli"])
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


# -- child processes ---------------------------------------------------------------------


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
    on a free loopback port with in-memory storage; returns once it accepts connections."""
    from sitewatch.devbroker import broker_binary, free_port

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = Child(
        f"127.0.0.1:{port}",
        Role.BROKER,
        [
            "broker",
            *("--listener-url", url, "--advertised-listener-url", url),
            *("--storage-engine", "memory://tansu/"),
        ],
        logs / "broker.log",
        program=[broker_binary()],
    )
    await spawn(broker, {**env, "RUST_LOG": env.get("RUST_LOG", "warn")})
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


# -- sites -------------------------------------------------------------------------------


def read_sites_file(path: Path) -> list[DevSite]:
    """One URL per line; blank lines and `#` comments are skipped."""
    sites: list[DevSite] = []
    for line in path.read_text().splitlines():
        url = line.split("#", 1)[0].strip()
        if not url:
            continue
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{path}: not an http(s) URL: {url!r}")
        name = (parts.netloc + parts.path.rstrip("/"))[:40]
        sites.append(
            DevSite(site_id=len(sites) + 1, name=name, url=url, https=parts.scheme == "https")
        )
    if not sites:
        raise ValueError(f"{path}: no URLs")
    return sites


async def start_demo(state: Path) -> tuple[Any, list[DevSite], Path]:
    """The demo fleet in this process: most sites up, one down, one flapping, an HTTPS
    site whose certificate expires in 5 days, and a down site inside a maintenance
    window (so it opens nothing)."""
    from sitewatch.probes.fleet import Behaviour, Fleet, SiteScript

    fleet = await Fleet().start()
    now = datetime.now(UTC)
    window = ((now - timedelta(minutes=5), now + timedelta(days=1)),)
    plan: list[tuple[str, SiteScript, float | None, str, tuple[tuple[datetime, datetime], ...]]] = [
        ("www", SiteScript(), None, "up", ()),
        ("blog", SiteScript(), None, "up", ()),
        ("docs", SiteScript(), None, "up", ()),
        ("shop", SiteScript(), 90, "up, certificate valid 90 days", ()),
        ("api", SiteScript(), None, "up", ()),
        ("legacy", SiteScript(Behaviour.DOWN), None, "down (connection refused)", ()),
        ("flaky", SiteScript(Behaviour.FLAPPING, flap_period=2), None, "flapping", ()),
        ("pay", SiteScript(), 5, "certificate expires in 5 days", ()),
        ("intranet", SiteScript(Behaviour.DOWN), None, "down, in maintenance", window),
    ]
    sites: list[DevSite] = []
    for i, (name, script, tls_days, note, maint) in enumerate(plan, start=1):
        site = await fleet.add(name, script, tls_days=tls_days)
        sites.append(DevSite(i, name, site.url, note=note, https=site.https, maintenance=maint))
    ca = fleet.write_ca(state / "fleet-ca.pem")
    return fleet, sites, ca


def site_records(sites: Sequence[DevSite], interval_s: int) -> list[tuple[bytes, bytes]]:
    """Short intervals so that events show within a minute."""
    from sitewatch.streams import records, timefmt
    from sitewatch.streams.enums import CheckType

    out = []
    for site in sites:
        rec = records.SiteRecord(
            site_id=site.site_id,
            url=site.url,
            check_interval_s=interval_s,
            timeout_s=5,
            recheck_interval_s=3,
            num_of_checks=2,
            peer_offline_limit=len(VERIFIERS),
            verify_timeout_s=10,
            maintenance=[
                records.MaintenanceWindow(
                    start=timefmt.from_ms(int(s.timestamp() * 1000)),
                    end=timefmt.from_ms(int(e.timestamp() * 1000)),
                )
                for s, e in site.maintenance
            ],
            checks=[CheckType.HTTP, CheckType.TLS_EXPIRY] if site.https else [CheckType.HTTP],
        )
        out.append((records.site_key(site.site_id), records.encode(rec)))
    return out


# -- the view ----------------------------------------------------------------------------


@dataclass(slots=True)
class OpenEvent:
    check_type: str
    state: str
    severity: int
    started_at: str


@dataclass(slots=True)
class SiteView:
    site: DevSite
    open: dict[str, OpenEvent] = field(default_factory=dict)
    last_reason: str = ""
    last_at: str = ""
    db_state: str = ""
    db_status: int | None = None

    def state(self, now: datetime) -> tuple[str, int]:
        if self.open:
            worst = max(self.open.values(), key=lambda e: (e.severity, e.started_at))
            return worst.state, worst.severity
        if self.site.in_maintenance(now):
            return "maintenance", 0
        return "up", 0


STATE_STYLE = {
    "up": "green",
    "warning": "yellow",
    "degraded": "dark_orange",
    "seems_down": "magenta",
    "down": "bold red",
    "maintenance": "blue",
    "resolved": "green",
}


@dataclass(slots=True)
class View:
    sites: dict[int, SiteView]
    children: list[Child]
    started: float = field(default_factory=time.monotonic)
    transitions: deque[Any] = field(default_factory=lambda: deque(maxlen=14))
    count: int = 0
    #: (received at, type, site_id, signature valid) of webhooks the notifier sent us
    webhooks: deque[tuple[str, str, int, bool]] = field(default_factory=lambda: deque(maxlen=6))
    webhook_count: int = 0

    def apply(self, tr: Any) -> None:
        """Fold one decoded `Transition` into the per-site open events."""
        self.count += 1
        self.transitions.append(tr)
        sv = self.sites.get(tr.site_id)
        if sv is None:
            return
        if tr.state_after == "resolved":
            sv.open.pop(tr.event_id, None)
        else:
            sv.open[tr.event_id] = OpenEvent(
                str(tr.check_type), str(tr.state_after), tr.severity_after or 0, tr.started_at
            )
        sv.last_reason, sv.last_at = str(tr.reason), tr.at

    def name_of(self, site_id: int) -> str:
        sv = self.sites.get(site_id)
        return sv.site.name if sv else str(site_id)

    def line(self, tr: Any) -> str:
        """One transition as one line (ASCII: a log file or a pipe may not be UTF-8)."""
        sev = "-" if tr.severity_after is None else str(tr.severity_after)
        return (
            f"{tr.at[11:19]}  {self.name_of(tr.site_id):<12} {tr.check_type!s:<10} "
            f"{tr.reason!s:<20} {tr.state_before!s} -> {tr.state_after!s} "
            f"(severity {tr.severity_before} -> {sev})  {tr.source}"
        )

    def status_line(self) -> str:
        """A short summary for output that is not a terminal: states, counts, children."""
        now = datetime.now(UTC)
        states: dict[str, int] = {}
        for sv in self.sites.values():
            state = sv.state(now)[0]
            states[state] = states.get(state, 0) + 1
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        running = sum(1 for c in self.children if c.status == "running")
        up = int(time.monotonic() - self.started)
        return (
            f"status up {up}s: {len(self.sites)} sites ({by_state}); "
            f"{self.count} transitions, {self.webhook_count} webhooks; "
            f"{running}/{len(self.children)} children running"
        )

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        now = datetime.now(UTC)
        sites = Table(title="sites", expand=True, title_justify="left")
        for col in ("id", "site", "state", "sev", "open events", "last change", "db", "what"):
            sites.add_column(col, no_wrap=col not in ("what",))
        for sv in self.sites.values():
            state, sev = sv.state(now)
            events = ", ".join(f"{e.check_type}:{e.state}" for e in sv.open.values())
            last = f"{sv.last_reason} {sv.last_at[11:19]}" if sv.last_reason else ""
            db = "" if sv.db_status is None else f"{sv.db_state} ({sv.db_status})"
            sites.add_row(
                str(sv.site.site_id),
                sv.site.name,
                Text(state, style=STATE_STYLE.get(state, "")),
                str(sev),
                events,
                last,
                db,
                sv.site.note or sv.site.url,
            )
        trs = Table(title=f"transitions ({self.count})", expand=True, title_justify="left")
        for col in ("at", "site", "check", "reason", "state", "sev", "source"):
            trs.add_column(col, no_wrap=True)
        for tr in reversed(self.transitions):
            sev_text = "-" if tr.severity_after is None else str(tr.severity_after)
            trs.add_row(
                tr.at[11:23],
                self.name_of(tr.site_id),
                str(tr.check_type),
                str(tr.reason),
                Text(
                    f"{tr.state_before} -> {tr.state_after}",
                    style=STATE_STYLE.get(str(tr.state_after), ""),
                ),
                sev_text,
                tr.source,
            )
        hooks = Table(
            title=f"webhooks received ({self.webhook_count})", expand=True, title_justify="left"
        )
        for col in ("received", "type", "site", "signature"):
            hooks.add_column(col, no_wrap=True)
        for at, kind, site_id, valid in reversed(self.webhooks):
            hooks.add_row(at, kind, self.name_of(site_id), Text("valid" if valid else "INVALID"))
        procs = "  ".join(f"{c.name}:{c.status}" for c in self.children)
        up = int(time.monotonic() - self.started)
        footer = Text(f"{procs}   up {up}s   Ctrl-C stops everything", style="dim")
        return Group(sites, trs, hooks, footer)


def read_projection(db_path: Path) -> dict[int, tuple[str, int]]:
    """The sink's site projection, read-only (a locked database just skips a round)."""
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=0.2)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT site_id, current_state, site_status FROM jetpack_monitor_sites"
        ).fetchall()
        return {int(r[0]): (str(r[1]), int(r[2])) for r in rows}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


async def follow_transitions(
    bootstrap: str, topic: str, on_transition: Callable[[Any], None]
) -> None:
    """Read `site-events` from the beginning (no group: a pure observer)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from sitewatch.streams import records
    from sitewatch.streams.kafka_admin import partitions_of

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",  # an out-of-range answer must not skip history
        fetch_max_wait_ms=100,  # Tansu answers a waiting fetch late: keep the view live
    )
    await consumer.start()
    try:
        parts: list[int] = []
        while not parts:
            parts = await partitions_of(bootstrap, topic)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            msgs = sorted(
                (m for ms in batches.values() for m in ms), key=lambda m: (m.timestamp, m.offset)
            )
            for msg in msgs:
                if msg.value is None:
                    continue
                try:
                    tr = records.transition_decoder.decode(msg.value)
                except (records.DecodeError, records.ValidationError):
                    continue
                on_transition(tr)
    finally:
        await consumer.stop()


async def start_api(env: dict[str, str], logs: Path) -> tuple[Child, str, str | None]:
    """`sitewatch api` on the dev database, with a read key made for it (printed at start).

    It listens on SITEWATCH_API_LISTEN when that is set, else on a free loopback port."""
    from sitewatch.devbroker import free_port

    listen = os.environ.get("SITEWATCH_API_LISTEN") or f"127.0.0.1:{free_port()}"
    create = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sitewatch.cli", "keys", "create", "--name", "dev"),
        *("--scope", "read"),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await create.communicate()
    lines = out.decode().strip().splitlines()
    token = lines[-1] if create.returncode == 0 and lines else None
    child = Child("api", Role.API, ["api"], logs / "api.log")
    await spawn(child, {**env, "SITEWATCH_API_LISTEN": listen})
    return child, f"http://{listen}/api/v1", token


async def start_receiver(
    secret: str, on_webhook: Callable[[str, int, bool], None]
) -> tuple[Any, str]:
    """A local webhook endpoint for the notifier, checking signatures as receivers must."""
    from aiohttp import web

    from sitewatch.devbroker import free_port
    from sitewatch.notify.signing import verify

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        valid = verify(secret, body, request.headers.get("X-Sitewatch-Signature", ""))
        try:
            data = json.loads(body)
            on_webhook(str(data.get("type", "?")), int(data.get("site_id", 0)), valid)
        except (ValueError, TypeError):
            return web.Response(status=400)
        return web.Response(status=204 if valid else 401)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


# -- the command -------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sites", type=Path, default=None, help="file of URLs (one a line) instead of the demo"
    )
    parser.add_argument(
        "--interval", type=int, default=10, help="check interval of every site, s (default 10)"
    )
    parser.add_argument(
        "--no-ui",
        action="store_true",
        help="print transitions as lines, no live view (the default when stdout is not a terminal)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="stop everything after this many seconds"
    )


async def _main(args: argparse.Namespace, conf: Settings) -> int:
    from sitewatch.migrations.command import upgrade
    from sitewatch.streams.kafka_admin import ensure_topics
    from sitewatch.streams.topics import TopicNames

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # SIGHUP too: a closed terminal must stop the children as cleanly as Ctrl-C
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    # rich's live view renders only at the end when stdout is a file or a pipe: there,
    # print lines as things happen instead
    args.no_ui = args.no_ui or not sys.stdout.isatty()
    out_gone = False

    def say(text: str) -> None:
        nonlocal out_gone
        if out_gone:
            return
        try:
            print(text, flush=True)
        except (BrokenPipeError, ValueError):
            # the reader went away (`| head`): stop everything cleanly, write no more
            out_gone = True
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    # The broker keeps its topics in memory, so every run starts from empty: the worker's
    # RocksDB state and the sink's stored offsets of a previous run must go too.
    run_dir = (conf.state_dir / "dev").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "logs").mkdir(parents=True)
    db_path = run_dir / "sitewatch.db"
    db_url = f"sqlite+aiosqlite:///{db_path}"

    broker = await start_broker(run_dir / "logs", dict(os.environ))
    bootstrap = broker.name
    say(f"broker   {bootstrap} pid={broker.pid}")
    fleet: Any = None
    receiver: Any = None
    children: list[Child] = []
    try:
        await upgrade(db_url)
        say(f"database {db_path} (migrated)")
        if args.sites is not None:
            sites, ca = read_sites_file(args.sites), None
        else:
            fleet, sites, ca = await start_demo(run_dir)
            say(f"fleet    {len(sites)} demo sites, admin {fleet.admin_url}")
        names = TopicNames(conf.topic_prefix)
        await ensure_topics([bootstrap], names, conf.partitions)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for key, value in site_records(sites, args.interval):
                await producer.send_and_wait(names.sites, value, key=key)
        finally:
            await producer.stop()

        env = {
            **os.environ,
            "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "SITEWATCH_STATE_DIR": str(run_dir),
            "SITEWATCH_DATABASE_URL": db_url,
            "SITEWATCH_VERIFIERS": ",".join(VERIFIERS),
            "SITEWATCH_TOPIC_PREFIX": conf.topic_prefix,
            "SITEWATCH_PARTITIONS": str(conf.partitions),
            "SITEWATCH_TICK_INTERVAL_S": "1",
            "SITEWATCH_LOG_FORMAT": "json",
            # webhook secrets are stored sealed; a key of this run's own unless one is set
            "SITEWATCH_SECRET_KEY": os.environ.get("SITEWATCH_SECRET_KEY") or crypto.new_key(),
        }
        if ca is not None:  # the demo fleet lives on loopback, behind its own CA
            env["SITEWATCH_PROBE_ALLOW_PRIVATE"] = "1"
            env["SITEWATCH_PROBE_EXTRA_CA"] = str(ca)
        logs = run_dir / "logs"
        view = View({s.site_id: SiteView(s) for s in sites}, children)

        def on_webhook(kind: str, site_id: int, valid: bool) -> None:
            view.webhook_count += 1
            view.webhooks.append((datetime.now(UTC).strftime("%H:%M:%S"), kind, site_id, valid))
            if args.no_ui:
                say(f"webhook {kind} {view.name_of(site_id)} signature={'ok' if valid else 'BAD'}")

        secret = secrets.token_hex(16)
        receiver, hook_url = await start_receiver(secret, on_webhook)
        # the receiver is ours, on loopback: the notifier may reach it even when probes
        # may not (`--sites FILE` checks real sites with the address guard on)
        notify_env = {**env, "SITEWATCH_PROBE_ALLOW_PRIVATE": "1"}
        add = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sitewatch.cli",
            "webhooks",
            "add",
            hook_url,
            env={**notify_env, "SITEWATCH_WEBHOOK_SECRET": secret},
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await add.wait() != 0:
            say("could not subscribe the local webhook receiver (notifications not shown)")
        children += [
            Child("sink", Role.SINK, ["sink", "--session-timeout-ms", "2000"], logs / "sink.log"),
            Child("worker", Role.WORKER, ["worker"], logs / "worker.log"),
            Child(
                "probe",
                Role.PROBE,
                ["probe", "--name", "local", "--max-initial-delay", "2"],
                logs / "probe.log",
            ),
            *(
                Child(f"verifier-{v}", Role.VERIFIER, ["verifier", "--name", v], logs / f"{v}.log")
                for v in VERIFIERS
            ),
            Child(
                "notify",
                Role.NOTIFY,
                ["notify", "--from-beginning"],
                logs / "notify.log",
                env=notify_env,
            ),
        ]
        for i, child in enumerate(children):
            child_env, metrics_at = child.env or env, ""
            if conf.metrics_address is not None:
                # one address each (all on one host): from the configured port upwards
                host, port = conf.metrics_address
                metrics_at = f"[{host}]:{port + i}" if ":" in host else f"{host}:{port + i}"
                child_env = {**child_env, "SITEWATCH_METRICS_LISTEN": metrics_at}
            await spawn(child, child_env)
            metrics_note = f" metrics=http://{metrics_at}/metrics" if metrics_at else ""
            say(f"started  {child.name} pid={child.pid} log={child.log}{metrics_note}")
        api, api_url, token = await start_api(env, logs)
        children.append(api)
        say(f"started  {api.name} pid={api.pid} log={api.log}")
        say(f"api      {api_url}  (OpenAPI: {api_url}/openapi.json)")
        say(f"token    {token or '(could not create a key)'}  (scope read)")

        def on_transition(tr: Any) -> None:
            view.apply(tr)
            if args.no_ui:
                say("transition " + view.line(tr))

        tasks = [
            asyncio.create_task(follow_transitions(bootstrap, names.site_events, on_transition))
        ]
        code = await _supervise(args, view, children, stop, db_path, say)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return code
    finally:
        if children:
            say("stopping " + ", ".join(c.name for c in children if c.proc))
        await stop_children(children)
        for child in children:
            say(f"stopped  {child.name} pid={child.pid} {child.status}")
        if receiver is not None:
            await receiver.cleanup()
        if fleet is not None:
            await fleet.close()
        await stop_children([broker])  # last: the others leave their groups through it
        say(f"stopped  broker pid={broker.pid} {broker.status}")


async def _supervise(
    args: argparse.Namespace,
    view: View,
    children: list[Child],
    stop: asyncio.Event,
    db_path: Path,
    say: Callable[[str], None],
) -> int:
    """Refresh the view until stopped, the duration is over, or a child dies."""
    deadline = None if args.duration is None else time.monotonic() + args.duration
    live: Any = None
    if not args.no_ui:
        from rich.live import Live

        live = Live(view.render(), refresh_per_second=2, screen=False, transient=False)
        live.start()
    code = 0
    last_status = time.monotonic()
    try:
        last_db = 0.0
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            dead = [c for c in children if c.proc and c.proc.returncode is not None]
            if dead:
                for c in dead:
                    say(f"child {c.name} {c.status}; see {c.log}")
                code = 1
                break
            if time.monotonic() - last_db > 2:
                last_db = time.monotonic()
                for site_id, (state, status) in (
                    await asyncio.to_thread(read_projection, db_path)
                ).items():
                    if site_id in view.sites:
                        view.sites[site_id].db_state = state
                        view.sites[site_id].db_status = status
            if live is not None:
                live.update(view.render())
            elif time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                say(view.status_line())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        if live is not None:
            live.update(view.render())
            live.stop()
    if args.no_ui:
        now = datetime.now(UTC)
        for sv in view.sites.values():
            state, sev = sv.state(now)
            say(
                f"site {sv.site.site_id} {sv.site.name:<12} {state} severity={sev} db={sv.db_state}"
            )
    return code


def run(args: argparse.Namespace, conf: Settings) -> int:
    if conf.log_level == "INFO":  # keep our own terminal for the view; children log to files
        logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(_main(args, conf))
