"""Every `SITEWATCH_*` setting, in one place, validated at start.

`load()` is the only way processes read settings; a bad value raises `SettingsError`
with one readable line per problem, and the CLI turns that into exit code 2.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import crypto


class BrokerFlavor(enum.StrEnum):
    """Which Kafka implementation we talk to; Tansu needs workarounds (docs/contract.md).

    `AUTO` is resolved at start (`sitewatch.streams.broker.resolve_flavor`) by asking
    the broker for its cluster id; a process never runs with `AUTO` in force.
    """

    AUTO = "auto"
    KAFKA = "kafka"
    TANSU = "tansu"


class SettingsError(ValueError):
    """Raised for invalid SITEWATCH_* values."""


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _split_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port); ValueError names what is wrong."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r}") from None
    elif not re.fullmatch(r"[A-Za-z0-9_.\-]+", host):
        raise ValueError("expected host:port, e.g. 127.0.0.1:9464 (empty: off)")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("expected host:port with a port from 1 to 65535 (empty: off)")
    return host, int(port)


class Settings(BaseSettings):
    """Process settings. Field `x` is read from `SITEWATCH_X`."""

    model_config = SettingsConfigDict(env_prefix="SITEWATCH_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="host:port[,host:port] of the broker"
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file under the state dir"
    )
    topic_prefix: str = Field("sitewatch.", description="prefix of topic names and app id")
    partitions: int = Field(8, ge=1, le=10_000, description="partitions of created topics")
    verifiers: str = Field("", description="comma-separated verifier locations")
    state_dir: Path = Field(Path("./.sitewatch"), description="local state directory")
    sink_writes: bool = Field(True, description="1 writes, 0 shadow mode")
    probe_allow_private: bool = Field(False, description="allow loopback/private targets")
    probe_extra_ca: Path | None = Field(
        None, description="PEM file of an extra CA probes trust (the local fleet's)"
    )
    probe_nameservers: str = Field(
        "", description="comma-separated host[:port] for dns checks; empty: resolv.conf"
    )
    broker_flavor: BrokerFlavor = Field(
        BrokerFlavor.AUTO,
        description="`auto` detects the bundled Tansu broker (cluster id `tansu_cluster`) "
        "and turns its workarounds on; `kafka` or `tansu` force one",
    )
    tick_interval_s: float = Field(
        1.0, gt=0, le=60, description="worker clock ticks on check-results (stream time)"
    )
    auto_timeout_s: int = Field(
        86_400,
        ge=60,
        le=10 * 365 * 86_400,
        description="close events with no input for this long (stream time)",
    )
    notify_retry_scale: float = Field(
        1.0,
        gt=0,
        le=100,
        description="multiplies the webhook retry schedule (1 min .. 6 h); tests use 0.01",
    )
    notify_timeout_s: float = Field(10.0, gt=0, le=300, description="webhook request timeout")
    metrics_listen: str = Field(
        "",
        description="host:port where a long-running process serves Prometheus /metrics; "
        "empty = off",
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Fernet key(s), comma-separated, the first seals: webhook secrets and "
        "site header values are stored encrypted with it (needed by `webhooks add`, "
        "`notify`; without it the sink stores header names only)",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="secret for `sitewatch webhooks add` (instead of the command line; "
        "or `--secret-file`)",
    )
    api_listen: str = Field(
        "127.0.0.1:8080",
        description="host:port of `sitewatch api` (REST API, status page, /metrics)",
    )
    log_format: str = Field(
        "auto",
        pattern="^(auto|json|console)$",
        description="auto (console on a terminal, JSON lines otherwise), json, console",
    )
    log_level: str = Field(
        "INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$", description="DEBUG, INFO, WARNING, ERROR"
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        hosts = [h.strip() for h in value.split(",")]
        bad = [h for h in hosts if not _HOSTPORT.match(h)]
        if bad or not hosts:
            raise ValueError(f"expected host:port[,host:port], got {value!r}")
        return ",".join(hosts)

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._\-]*", value):
            raise ValueError("may hold only letters, digits, '.', '_' and '-'")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        allowed = ("mysql+asyncmy://", "mysql+aiomysql://", "sqlite+aiosqlite://")
        if not value.startswith(allowed):
            raise ValueError(f"must start with one of {', '.join(allowed)}")
        return value

    @field_validator("metrics_listen")
    @classmethod
    def _check_metrics_listen(cls, value: str) -> str:
        value = value.strip()
        if value:
            _split_listen(value)
        return value

    @field_validator("api_listen")
    @classmethod
    def _check_api_listen(cls, value: str) -> str:
        try:
            _split_listen(value.strip())
        except ValueError:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8080") from None
        return value.strip()

    @field_validator("verifiers")
    @classmethod
    def _check_verifiers(cls, value: str) -> str:
        names = [v.strip() for v in value.split(",") if v.strip()]
        for name in names:
            # a verifier's name ends up in `source` (`verifier:<name>`, 255 characters)
            if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
                raise ValueError(f"bad verifier name {name[:80]!r} (1-64 of A-Z a-z 0-9 . _ -)")
        return ",".join(names)

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        crypto.parse_keys(value.get_secret_value())
        return value

    @field_validator("probe_extra_ca")
    @classmethod
    def _check_ca(cls, value: Path | None) -> Path | None:
        if value is not None and str(value) and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value or None

    @cached_property
    def nameserver_list(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.probe_nameservers.split(",") if n.strip())

    @cached_property
    def verifier_names(self) -> tuple[str, ...]:
        return tuple(v for v in self.verifiers.split(",") if v)

    @property
    def bootstrap_servers(self) -> list[str]:
        return self.kafka_bootstrap.split(",")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'sitewatch.db').resolve()}"

    @property
    def api_address(self) -> tuple[str, int]:
        return _split_listen(self.api_listen)

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """(host, port) of the metrics endpoint, None when metrics are off."""
        return _split_listen(self.metrics_listen) if self.metrics_listen else None

    @property
    def is_tansu(self) -> bool:
        return self.broker_flavor is BrokerFlavor.TANSU

    @cached_property
    def secret_box(self) -> crypto.SecretBox | None:
        """Seals and opens secrets at rest; None without SITEWATCH_SECRET_KEY."""
        if self.secret_key is None:
            return None
        return crypto.SecretBox(crypto.parse_keys(self.secret_key.get_secret_value()))


def load() -> Settings:
    """Read and validate the environment; raise SettingsError with every problem."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "SITEWATCH_" + "_".join(str(p) for p in err["loc"]).upper()
            msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's, not ours
            if name in SECRET_SETTINGS:
                lines.append(f"{name}: {msg} (got <hidden>)")
                continue
            got = repr(err.get("input"))
            lines.append(f"{name}: {msg}" if got in msg else f"{name}: {msg} (got {got})")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None


#: settings whose values are never printed
SECRET_SETTINGS = frozenset({"SITEWATCH_SECRET_KEY", "SITEWATCH_WEBHOOK_SECRET"})
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://[^:/@]*):[^@]*@")


def mask_url(url: str) -> str:
    """A URL with its password replaced by `***` (`sitewatch settings`, logs)."""
    return _URL_PASSWORD.sub(r"\1:***@", url)


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting: the README table and `--help`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = "" if field.default is None else str(field.default)
        if isinstance(field.default, enum.Enum):
            default = str(field.default.value)
        rows.append((f"SITEWATCH_{name.upper()}", default, field.description or ""))
    return rows
