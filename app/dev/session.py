"""One `sitewatch dev` run: what starts in which order, and how it all stops.

The broker starts first and stops last (the others leave their groups through it);
the children stop before the receiver and the demo fleet they talk to. Every line the
run prints goes through `Output`, which the tests and the README quote.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from rich.live import Live

from sitewatch import crypto
from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.probes.fleet import Fleet
from sitewatch.settings import Settings
from sitewatch.streams import broker as kafka
from sitewatch.streams import records
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames

from .follower import follow_transitions
from .receiver import start_receiver
from .sites import VERIFIERS, DevSite, read_sites_file, site_records, start_demo
from .supervisor import Child, ChildRole, cli, spawn, start_broker, stop_children
from .view import SiteView, View, read_projection

#: how often the plain (not a terminal) output prints a status line
STATUS_EVERY_S = 15.0
#: how often the view reads the sink's projection from the database
PROJECTION_EVERY_S = 2.0


class Output:
    """Lines on stdout as things happen. A reader that goes away (`| head`) stops the
    run cleanly, and nothing more is written."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.gone = False

    def __call__(self, text: str) -> None:
        if self.gone:
            return
        try:
            print(text, flush=True)
        except (BrokenPipeError, ValueError):
            self.gone = True
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self.stop.set()


@dataclass
class DevOptions:
    """The command's arguments (`sitewatch.commands.dev`)."""

    sites_file: Path | None
    interval_s: int
    #: plain lines instead of the live view
    plain: bool
    duration_s: float | None


@dataclass
class DevRun:
    """What one run has started, so that `close()` stops exactly that."""

    conf: Settings
    options: DevOptions
    say: Output
    run_dir: Path
    #: started first, stopped last; its name is its bootstrap address
    broker: Child
    fleet: Fleet | None = None
    receiver: web.AppRunner | None = None
    children: list[Child] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def db_path(self) -> Path:
        return self.run_dir / "sitewatch.db"

    @property
    def logs(self) -> Path:
        return self.run_dir / "logs"

    async def start(self) -> View:
        """Everything, in order; answers the view the children and the follower feed."""
        db_url = f"sqlite+aiosqlite:///{self.db_path}"
        await upgrade(db_url)
        self.say(f"database {self.db_path} (migrated)")
        sites, ca = await self._sites()
        bootstrap = self.broker.name
        names = TopicNames(self.conf.topic_prefix)
        await ensure_topics([bootstrap], names, self.conf.partitions)
        await publish(bootstrap, names.sites, site_records(sites, self.options.interval_s))
        env = self._env(bootstrap, db_url, ca)
        view = View({s.site_id: SiteView(s) for s in sites}, self.children)
        # the receiver is ours, on loopback: the notifier may reach it even when probes
        # may not (`--sites FILE` checks real sites with the address guard on)
        notify_env = {**env, "SITEWATCH_PROBE_ALLOW_PRIVATE": "1"}
        await self._subscribe_receiver(view, notify_env)
        await self._start_children(env, notify_env)
        await self._start_api(env)

        def on_transition(tr: records.Transition) -> None:
            view.apply(tr)
            if self.options.plain:
                self.say("transition " + view.line(tr))

        follow = follow_transitions(bootstrap, names.site_events, on_transition)
        self.tasks.append(asyncio.create_task(follow))
        return view

    async def _sites(self) -> tuple[list[DevSite], Path | None]:
        """The sites of `--sites FILE`, or the demo fleet's (and the PEM of its CA)."""
        if self.options.sites_file is not None:
            return read_sites_file(self.options.sites_file), None
        self.fleet, sites, ca = await start_demo(self.run_dir)
        self.say(f"fleet    {len(sites)} demo sites, admin {self.fleet.admin_url}")
        return sites, ca

    def _env(self, bootstrap: str, db_url: str, ca: Path | None) -> dict[str, str]:
        """The children's settings: this run's broker, database and state dir."""
        conf = self.conf
        env = {
            **os.environ,
            "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
            "SITEWATCH_STATE_DIR": str(self.run_dir),
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
        return env

    async def _subscribe_receiver(self, view: View, notify_env: dict[str, str]) -> None:
        """The local webhook receiver, subscribed with `sitewatch webhooks add`."""

        def on_webhook(kind: str, site_id: int, valid: bool) -> None:
            view.received(kind, site_id, valid)
            if self.options.plain:
                self.say(view.webhook_line(kind, site_id, valid))

        secret = secrets.token_hex(16)
        self.receiver, hook_url = await start_receiver(secret, on_webhook)
        add = await asyncio.create_subprocess_exec(
            *cli("webhooks", "add", hook_url),
            env={**notify_env, "SITEWATCH_WEBHOOK_SECRET": secret},
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await add.wait() != 0:
            self.say("could not subscribe the local webhook receiver (notifications not shown)")

    async def _start_children(self, env: dict[str, str], notify_env: dict[str, str]) -> None:
        """The long-running processes, each on its own metrics port when metrics are on."""
        logs = self.logs
        self.children += [
            Child(
                "sink", ChildRole.SINK, ["sink", "--session-timeout-ms", "2000"], logs / "sink.log"
            ),
            Child("worker", ChildRole.WORKER, ["worker"], logs / "worker.log"),
            Child(
                "probe",
                ChildRole.PROBE,
                ["probe", "--name", "local", "--max-initial-delay", "2"],
                logs / "probe.log",
            ),
            *(
                Child(
                    f"verifier-{v}",
                    ChildRole.VERIFIER,
                    ["verifier", "--name", v],
                    logs / f"{v}.log",
                )
                for v in VERIFIERS
            ),
            Child(
                "notify",
                ChildRole.NOTIFY,
                ["notify", "--from-beginning"],
                logs / "notify.log",
                env=notify_env,
            ),
        ]
        for i, child in enumerate(self.children):
            child_env, metrics_at = child.env or env, metrics_listen(self.conf, i)
            if metrics_at:
                child_env = {**child_env, "SITEWATCH_METRICS_LISTEN": metrics_at}
            await spawn(child, child_env)
            metrics_note = f" metrics=http://{metrics_at}/metrics" if metrics_at else ""
            self.say(f"started  {child.name} pid={child.pid} log={child.log}{metrics_note}")

    async def _start_api(self, env: dict[str, str]) -> None:
        """`sitewatch api` on the dev database, with a read key made for it (printed).

        It listens on SITEWATCH_API_LISTEN when that is set, else on a free loopback port."""
        listen = os.environ.get("SITEWATCH_API_LISTEN") or f"127.0.0.1:{free_port()}"
        create = await asyncio.create_subprocess_exec(
            *cli("keys", "create", "--name", "dev", "--scope", "read"),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await create.communicate()
        lines = out.decode().strip().splitlines()
        token = lines[-1] if create.returncode == 0 and lines else None
        api = Child("api", ChildRole.API, ["api"], self.logs / "api.log")
        await spawn(api, {**env, "SITEWATCH_API_LISTEN": listen})
        self.children.append(api)
        base_url = f"http://{listen}"
        api_url = f"{base_url}/api/v1"
        self.say(f"started  {api.name} pid={api.pid} log={api.log}")
        self.say(f"api      {api_url}  (OpenAPI: {api_url}/openapi.json)")
        self.say(f"status   {base_url}/  (status page, no token needed)")
        self.say(f"token    {token or '(could not create a key)'}  (scope read)")

    async def watch(self, view: View, stop: asyncio.Event) -> int:
        """Refresh the view until stopped, the duration is over (0), or a child dies (1)."""
        duration = self.options.duration_s
        deadline = None if duration is None else time.monotonic() + duration
        live = None
        if not self.options.plain:
            live = Live(view.render(), refresh_per_second=2, screen=False, transient=False)
            live.start()
        code = 0
        last_status = time.monotonic()
        try:
            last_db = 0.0
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                dead = [c for c in self.children if c.exited]
                if dead:
                    for c in dead:
                        self.say(f"child {c.name} {c.status}; see {c.log}")
                    code = 1
                    break
                if time.monotonic() - last_db > PROJECTION_EVERY_S:
                    last_db = time.monotonic()
                    view.apply_projection(await asyncio.to_thread(read_projection, self.db_path))
                if live is not None:
                    live.update(view.render())
                elif time.monotonic() - last_status >= STATUS_EVERY_S:
                    last_status = time.monotonic()
                    self.say(view.status_line())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
        finally:
            if live is not None:
                live.update(view.render())
                live.stop()
        if self.options.plain:
            for line in view.site_lines():
                self.say(line)
        return code

    async def close(self) -> None:
        """Stop what was started: the follower, the children, the receiver, the fleet,
        and last the broker."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.children:
            self.say("stopping " + ", ".join(c.name for c in self.children if c.proc))
        await stop_children(self.children)
        for child in self.children:
            self.say(f"stopped  {child.name} pid={child.pid} {child.status}")
        if self.receiver is not None:
            await self.receiver.cleanup()
        if self.fleet is not None:
            await self.fleet.close()
        await stop_children([self.broker])
        self.say(f"stopped  broker pid={self.broker.pid} {self.broker.status}")


def metrics_listen(conf: Settings, i: int) -> str:
    """The `i`th child's SITEWATCH_METRICS_LISTEN ("" when metrics are off): one address
    each, all on one host, from the configured port upwards."""
    if conf.metrics_address is None:
        return ""
    host, port = conf.metrics_address
    return f"[{host}]:{port + i}" if ":" in host else f"{host}:{port + i}"


async def publish(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """(key, value) messages to `topic`, each acknowledged before the next."""
    producer = kafka.producer(bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


def stop_on_signals() -> asyncio.Event:
    """Set on SIGINT, SIGTERM and SIGHUP: a closed terminal must stop the children as
    cleanly as Ctrl-C."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    return stop


def fresh_run_dir(conf: Settings) -> Path:
    """`<state dir>/dev`, emptied. The broker keeps its topics in memory, so every run
    starts from empty: the worker's RocksDB state and the sink's stored offsets of a
    previous run must go too."""
    run_dir = (conf.state_dir / "dev").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    (run_dir / "logs").mkdir(parents=True)
    return run_dir


async def run_dev(conf: Settings, options: DevOptions) -> int:
    """The whole run: start, watch until stopped, stop everything. 0, or 1 when a child died."""
    stop = stop_on_signals()
    say, run_dir = Output(stop), fresh_run_dir(conf)
    broker = await start_broker(run_dir / "logs", dict(os.environ))
    say(f"broker   {broker.name} pid={broker.pid}")
    dev = DevRun(conf, options, say, run_dir, broker)
    try:
        view = await dev.start()
        return await dev.watch(view, stop)
    finally:
        await dev.close()
