"""Static checks of systemd/jobd.service and systemd/jobd.toml.

They need only `systemd-analyze` (no running systemd), so they run wherever
it is installed; where it is not they are skipped, or fail when
JOBD_TEST_SYSTEMD=required (as .ci/run sets it).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from jobd import exitcodes
from jobd.settings import SECTIONS, Settings, load
from jobd.units import parse_duration

ROOT = Path(__file__).resolve().parents[2]
UNIT_FILE = ROOT / "systemd" / "jobd.service"
EXAMPLE_CONFIG = ROOT / "systemd" / "jobd.toml"
INSTALLED_JOBD = "/opt/jobd/bin/jobd"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        reason = "systemd-analyze not installed"
        if os.environ.get("JOBD_TEST_SYSTEMD") == "required":
            pytest.fail(f"JOBD_TEST_SYSTEMD=required but {reason}")
        pytest.skip(reason)
    return found


def directives(path: Path) -> dict[str, list[str]]:
    """Each `Key=value` of a unit file, values in file order (keys may repeat)."""
    found: dict[str, list[str]] = defaultdict(list)
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found[key.strip()].append(value.strip())
    return found


def the(unit: dict[str, list[str]], key: str) -> str:
    values = unit.get(key, [])
    assert len(values) == 1, f"{key}= should appear once in jobd.service, found {values}"
    return values[0]


def test_unit_file_verifies_clean(tmp_path: Path) -> None:
    """`systemd-analyze verify` says nothing; ExecStart must name an executable,
    so a copy points at this environment's jobd when /opt/jobd is not installed."""
    analyze = systemd_analyze()
    text = UNIT_FILE.read_text()
    if not os.access(INSTALLED_JOBD, os.X_OK):
        here = Path(sys.executable).parent / "jobd"
        text = text.replace(INSTALLED_JOBD, str(here if here.exists() else "/bin/true"))
    copy = tmp_path / "jobd.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_security_exposure_is_at_most_2() -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(UNIT_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for jobd\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def test_lifecycle_directives_match_the_daemon() -> None:
    """What the master does (jobd/systemd.py, exitcodes, settings) and what the unit
    expects of it must agree; a change on one side shows up here."""
    unit = directives(UNIT_FILE)
    defaults = Settings()
    assert the(unit, "Type") == "notify"
    assert the(unit, "ExecStart").split()[1:] == ["run", "-c", "/etc/jobd/jobd.toml"]
    assert the(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert the(unit, "KillMode") == "mixed"
    drain = defaults.pool.graceful_timeout + defaults.limits.kill_grace
    assert parse_duration(the(unit, "TimeoutStopSec")) > drain
    assert parse_duration(the(unit, "TimeoutStartSec")) > defaults.pool.boot_timeout
    assert parse_duration(the(unit, "WatchdogSec")) > 0  # the master pets at half of it
    assert the(unit, "OOMPolicy") == "continue"
    assert the(unit, "Restart") == "on-failure"
    prevented = {int(code) for code in the(unit, "RestartPreventExitStatus").split()}
    assert prevented == {exitcodes.USAGE, exitcodes.BOOT_ERROR, exitcodes.SCHEMA}
    assert exitcodes.FAILURE not in prevented  # a lost database connection is worth a restart
    assert the(unit, "StateDirectory") == "jobd"
    assert defaults.jobd.database == "sqlite:////var/lib/jobd/jobd.db"
    assert the(unit, "User") == "jobd"
    assert "DynamicUser" not in unit


def uncommented_settings(text: str) -> str:
    """The example with every commented `key = value` of the settings sections switched on."""
    lines, section = [], None
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]", line)
        if header:
            section = header.group(1)
        elif line.startswith("# ["):
            section = None  # the commented examples of [routines] and [[schedules]]
        switch_on = section in SECTIONS and re.match(r"# \w+ = ", line)
        lines.append(line[2:] if switch_on else line)
    return "\n".join(lines)


def test_example_config_shows_every_setting_with_its_default(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text()
    settings = load(EXAMPLE_CONFIG, {})
    assert settings.jobd.database == "sqlite:////var/lib/jobd/jobd.db"
    every = tmp_path / "jobd.toml"
    every.write_text(uncommented_settings(text))
    switched_on = load(every, {})
    for name, cls in SECTIONS.items():
        assert re.search(rf"^\[{name}\]$", text, re.MULTILINE), f"[{name}] missing"
        for declared in dataclasses.fields(cls):
            key = declared.name
            assert re.search(rf"^(# )?{key} = ", text, re.MULTILINE), f"{name}.{key} missing"
            if re.search(rf"^# {key} = ", text, re.MULTILINE):
                shown = getattr(getattr(switched_on, name), key)
                assert shown == declared.default, f"{name}.{key}: shows {shown!r}"
