"""The console script: every command's `--help`, bad settings, unknown commands.

In-process through `cli.main` for speed (each command module is imported as the
console script would), and once through the installed `sitewatch` script itself.
"""

from __future__ import annotations

import subprocess

import pytest

from sitewatch import cli, settings
from tests.kafka_util import SITEWATCH

#: a bad value of each kind of setting, and what the message must say about it
BAD_VALUES: dict[str, tuple[str, str]] = {
    "SITEWATCH_PARTITIONS": ("0", "greater than or equal to 1"),
    "SITEWATCH_KAFKA_BOOTSTRAP": ("nope", "host:port"),
    "SITEWATCH_SINK_WRITES": ("maybe", "boolean"),
    "SITEWATCH_BROKER_FLAVOR": ("redpanda", "auto"),
    "SITEWATCH_DATABASE_URL": ("postgres://x/y", "must start with"),
    "SITEWATCH_TOPIC_PREFIX": ("a b", "letters"),
    "SITEWATCH_VERIFIERS": ("eu,u s", "bad verifier name"),
    "SITEWATCH_TICK_INTERVAL_S": ("-1", "greater than 0"),
    "SITEWATCH_AUTO_TIMEOUT_S": ("soon", "integer"),
    "SITEWATCH_LOG_LEVEL": ("LOUD", "pattern"),
    "SITEWATCH_PROBE_EXTRA_CA": ("/no/such/ca.pem", "no such file"),
}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the settings a test sets: none inherited from the machine."""
    import os

    for name in list(os.environ):
        if name.startswith("SITEWATCH_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sitewatch {command}")
    assert cli.COMMANDS[command] in out  # the one-line description


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in cli.COMMANDS)


@pytest.mark.parametrize(
    "argv", [["bogus"], ["wrker", "--help"], []], ids=["bogus", "typo", "none"]
)
def test_unknown_or_missing_command_exits_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sitewatch")
    assert "invalid choice" in err or "required" in err


@pytest.mark.parametrize("variable", sorted(BAD_VALUES))
def test_bad_setting_exits_2_naming_the_variable(
    variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    value, says = BAD_VALUES[variable]
    monkeypatch.setenv(variable, value)
    assert cli.main(["settings"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    header, *problems = captured.err.splitlines()
    assert header == "sitewatch: invalid settings:"
    [line] = problems
    assert line.strip().startswith(f"{variable}: ") and says in line, line


def test_every_bad_setting_is_reported_one_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable, (value, _) in BAD_VALUES.items():
        monkeypatch.setenv(variable, value)
    assert cli.main(["worker"]) == 2
    _, *problems = capsys.readouterr().err.splitlines()
    assert sorted(line.split(":")[0].strip() for line in problems) == sorted(BAD_VALUES)


def test_every_setting_has_a_description() -> None:
    rows = settings.describe()
    assert {var for var, _, _ in rows} >= set(BAD_VALUES)
    assert all(meaning for _, _, meaning in rows), rows


def test_console_script_bad_setting_and_unknown_command() -> None:
    """The installed script itself, as the README documents it."""
    bad = subprocess.run(
        [SITEWATCH, "worker"],
        env={"SITEWATCH_PARTITIONS": "0", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert "SITEWATCH_PARTITIONS: Input should be greater than or equal to 1" in bad.stderr
    unknown = subprocess.run([SITEWATCH, "bogus"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "invalid choice: 'bogus'" in unknown.stderr
