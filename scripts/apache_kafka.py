#!/usr/bin/env python3
"""Apache Kafka for the test suite and benchmarks: fetched from Maven Central, run on loopback.

    python scripts/apache_kafka.py fetch          # the jars, into the cache (reused when present)
    python scripts/apache_kafka.py run [--port N] # one KRaft broker+controller in the foreground

`KafkaNode` is what the pytest fixture and the benchmarks use: it formats KRaft storage in a
data folder of its own, starts one node on free loopback ports, waits until it is serving,
and stops it (SIGTERM, then SIGKILL). `restart()` keeps the data folder and the ports, so a
test can take the broker away and bring the same cluster back.

Standard library only, so it runs before the virtualenv exists. Needs `java` (17+) and `mvn`;
without them it fails loudly.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.1.1")
CACHE = Path(
    os.environ.get("KAFKA_CACHE_DIR")
    or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sitewatch" / "kafka"
)

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sitewatch</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <!-- the server logs through SLF4J; this binds it to log4j2 and our config -->
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
"""

# INFO from the server (the "started" line tells readiness), warnings from the rest
LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = INFO
"""

READY_LINE = "Kafka Server started"


class KafkaError(RuntimeError):
    """Apache Kafka could not be fetched or started."""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise KafkaError(
            f"`{tool}` is required to run Apache Kafka for the tests (Java 17+ and Maven); "
            f"install it (Debian: openjdk-17-jre-headless, maven)"
        )
    return path


def libs_dir(version: str = KAFKA_VERSION) -> Path:
    return CACHE / version / "libs"


def fetch(version: str = KAFKA_VERSION, quiet: bool = False) -> Path:
    """The folder of Kafka's runtime jars, fetched with Maven the first time."""
    libs = libs_dir(version)
    done = libs.parent / ".complete"
    if done.exists():
        return libs
    java, mvn = _need("java"), _need("mvn")
    del java
    libs.parent.mkdir(parents=True, exist_ok=True)
    pom = libs.parent / "pom.xml"
    pom.write_text(POM.format(version=version), "utf-8")
    t0 = time.monotonic()
    if not quiet:
        print(f"apache-kafka: fetching Kafka {version} from Maven Central into {libs}", flush=True)
    shutil.rmtree(libs, ignore_errors=True)
    proc = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        raise KafkaError(f"mvn could not fetch Kafka {version}:\n{proc.stdout}\n{proc.stderr}")
    (libs.parent / "log4j2.properties").write_text(LOG4J2, "utf-8")
    done.write_text(version, "utf-8")
    if not quiet:
        jars = len(list(libs.glob("*.jar")))
        print(f"apache-kafka: {jars} jars in {time.monotonic() - t0:.0f} s", flush=True)
    return libs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


@dataclass
class KafkaNode:
    """One Apache Kafka node (KRaft broker+controller) on 127.0.0.1:`port`."""

    data_dir: Path | None = None
    port: int = 0
    controller_port: int = 0
    version: str = KAFKA_VERSION
    heap: str = "768m"
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _owns_dir: bool = field(default=False, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def _java(self, main: str, *args: str) -> list[str]:
        libs = fetch(self.version, quiet=True)
        return [
            _need("java"),
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={libs.parent / 'log4j2.properties'}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _configure(self) -> Path:
        assert self.data_dir is not None
        props = self.data_dir / "server.properties"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}",
            "listeners": (
                f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}"
            ),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # tests run consumers with short sessions (the sink's --session-timeout-ms 2000)
            "group.min.session.timeout.ms": "1000",
            "log.cleaner.backoff.ms": "1000",
        }
        props.write_text("".join(f"{k}={v}\n" for k, v in lines.items()), "utf-8")
        return props

    def start(self, ready_timeout_s: float = 90.0) -> KafkaNode:
        """Format (first time only) and start; return once the broker serves requests."""
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="apache-kafka-"))
            self._owns_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        formatted = (self.data_dir / "logs" / "meta.properties").exists()
        if formatted and not self.port:
            self._read_ports()  # a node of an earlier run: same ports, same cluster
        if not formatted:
            self.port = self.port or free_port()
            self.controller_port = self.controller_port or free_port()
        props = self._configure()
        if not formatted:
            fmt = subprocess.run(
                self._java(
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    # `=`: a random id may start with "-", which argparse would take for an option
                    f"--cluster-id={_cluster_id()}",
                    "-c",
                    str(props),
                ),
                capture_output=True,
                text=True,
            )
            if fmt.returncode != 0:
                raise KafkaError(f"kafka-storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                self._java("kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise KafkaError(
                    f"Kafka exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self._log_tail(offset)
                )
            if READY_LINE in self._log_tail(offset) and self._port_open():
                return self
            time.sleep(0.1)
        self.stop()
        raise KafkaError(f"Kafka not ready on {self.bootstrap} in {ready_timeout_s:.0f} s")

    def _read_ports(self) -> None:
        assert self.data_dir is not None
        for line in (self.data_dir / "server.properties").read_text("utf-8").splitlines():
            if line.startswith("listeners="):
                for listener in line.split("=", 1)[1].split(","):
                    name, port = listener.split("://")[0], int(listener.rsplit(":", 1)[1])
                    if name == "PLAINTEXT":
                        self.port = port
                    elif name == "CONTROLLER":
                        self.controller_port = port

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")[-20_000:]
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL if it takes longer than `timeout_s`."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same data folder and ports."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KafkaNode:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _run(port: int, data_dir: Path | None) -> int:
    node = KafkaNode(data_dir=data_dir, port=port)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    node.start()
    print(node.bootstrap, flush=True)
    try:
        while not stopping and node.process is not None and node.process.poll() is None:
            time.sleep(0.2)
    finally:
        node.close()
    return 0 if stopping else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="fetch the jars into the cache (no-op when present)")
    run = sub.add_parser("run", help="run one node in the foreground; print its bootstrap")
    run.add_argument("--port", type=int, default=0)
    run.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(fetch(), flush=True)
            return 0
        return _run(args.port, args.data_dir)
    except KafkaError as exc:
        print(f"FATAL: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
