"""A real systemd for the acceptance tests, and jobd installed in it.

`systemd-lab.sh` (in the shared tools beside the repository) boots systemd
252 with journald as PID 1 of fresh namespaces over an overlay of this
machine's root: every `up` is an empty system, `down` throws it away. The
`Lab` class drives it from the test process: commands run inside with
`systemd-lab.sh exec` (stdin, stdout and the exit code pass through), in
the container's root cgroup, never in the unit's.

`install_jobd` follows docs/systemd.md step by step, with the lab's two
differences: pip installs from a local wheelhouse (no network), and the
application is a module of test routines under /srv/jobd-app.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from tests import waiting
from tests.systemd import wheelhouse

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LAB_SCRIPT = Path(
    os.environ.get("JOBD_SYSTEMD_LAB", ROOT.parent / "shared" / "tools" / "systemd-lab.sh")
)
UNIT = "jobd"
CONFIG = "/etc/jobd/jobd.toml"
APP_DIR = "/srv/jobd-app"  # the application: the test routines (read-only to the unit)
GATES = "/srv/jobd-lab/gates"  # files the routines wait for; the test creates them
HOLD_IMPORT = "/srv/jobd-lab/hold-import"  # while it exists, importing the routines waits
VENV = "/opt/jobd"
PRODUCER = "app"  # the application's user: enqueues, in group jobd, outside the unit


def unavailable() -> str | None:
    """Why the lab cannot run here, or None."""
    if sys.platform != "linux":
        return "the systemd lab needs Linux"
    if os.geteuid() != 0:
        return "the systemd lab needs root (namespaces, cgroups, mounts)"
    if not LAB_SCRIPT.is_file():
        return f"{LAB_SCRIPT} not found"
    if not Path("/usr/lib/systemd/systemd").exists():
        return "systemd is not installed (/usr/lib/systemd/systemd)"
    for tool in ("unshare", "nsenter", "setpriv", "script"):
        if shutil.which(tool) is None:
            return f"{tool} not found"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"unshare cannot create namespaces here: {probe.stderr.decode().strip()}"
    return None


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """tests.waiting.wait_until, polling less often: each poll starts processes in the lab."""
    return waiting.wait_until(predicate, timeout, interval=0.05, what=what)


class Lab:
    def __init__(self, directory: Path, name: str, binds: Iterable[str] = ()) -> None:
        self.directory = directory
        self.share = directory / "share"  # bind-mounted read-write at the same path inside
        # Nothing else of the test's environment: PYTHONPATH, VIRTUAL_ENV or a
        # JOBD_DATABASE there would change what pip and jobd do inside.
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LAB_DIR": str(directory),
            "LAB_NAME": name,
            "LAB_NET": "host",
            "LAB_BIND": " ".join(binds),
        }

    # -- the container -------------------------------------------------------

    def up(self) -> None:
        self.share.mkdir(parents=True, exist_ok=True)
        result = self._script("up", timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"systemd-lab.sh up failed:\n{result.stdout}{result.stderr}")

    def down(self) -> None:
        self._script("down", timeout=120)

    def _script(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(LAB_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(
        self, *argv: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the lab (as root, outside the unit)."""
        result = subprocess.run(
            ["bash", str(LAB_SCRIPT), "exec", *argv],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"in the lab: {shlex.join(argv)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, check: bool = True, timeout: float = 60) -> str:
        return self.run("/bin/sh", "-ec", script, check=check, timeout=timeout).stdout

    def popen(self, *argv: str) -> subprocess.Popen[str]:
        """A command inside the lab that the test does not wait for at once."""
        return subprocess.Popen(
            ["bash", str(LAB_SCRIPT), "exec", *argv],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def write(self, path: str, text: str, mode: str = "0644", owner: str = "root:root") -> None:
        script = (
            f'mkdir -p "$(dirname {shlex.quote(path)})" && cat > {shlex.quote(path)} && '
            f"chmod {mode} {shlex.quote(path)} && chown {owner} {shlex.quote(path)}"
        )
        self.run("/bin/sh", "-ec", script, input=text)

    # -- systemd -------------------------------------------------------------

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", *args, check=check, timeout=120)

    def show(self, *props: str, unit: str = UNIT) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def unit_processes(self, unit: str = UNIT) -> list[tuple[int, str]]:
        """(pid, title) of every process in the unit's cgroup."""
        script = (
            f'cg=$(systemctl show -P ControlGroup {unit}); [ -n "$cg" ] || exit 0; '
            'for p in $(cat "/sys/fs/cgroup$cg/cgroup.procs" 2>/dev/null); do '
            'printf "%s " "$p"; tr "\\0" " " < /proc/$p/cmdline 2>/dev/null; echo; done'
        )
        found = []
        for line in self.sh(script).splitlines():
            pid, _, title = line.partition(" ")
            if pid.isdigit() and title.strip():
                found.append((int(pid), title.strip()))
        return found

    def workers(self, unit: str = UNIT) -> list[tuple[int, str]]:
        return [(pid, t) for pid, t in self.unit_processes(unit) if t.startswith("jobd: worker")]

    def journal(self, *matches: str, unit: str = UNIT) -> list[dict[str, Any]]:
        out = self.run(
            "journalctl", "--unit", unit, "--output", "json", "--no-pager", *matches
        ).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def journal_text(self, unit: str = UNIT, lines: int = 80) -> str:
        """For failure messages: the unit's recent journal."""
        return self.run(
            "journalctl", "--unit", unit, "--no-pager", "--lines", str(lines), check=False
        ).stdout

    # -- the application's side ----------------------------------------------

    def client(self, *args: str) -> Any:
        """tests/systemd/lab_client.py as the producer user; its JSON output."""
        result = self.run(
            "runuser", "-u", PRODUCER, "--", f"{VENV}/bin/python", f"{APP_DIR}/lab_client.py",
            *args,
        )  # fmt: skip
        return json.loads(result.stdout)

    def open_gate(self, name: str) -> None:
        self.run("touch", f"{GATES}/{name}")


SQLITE = "sqlite:////var/lib/jobd/jobd.db"


def config_toml(min_workers: int = 2, max_workers: int = 2, database: str = SQLITE) -> str:
    """The lab's /etc/jobd/jobd.toml: SQLite in the state directory, the test routines."""
    return f"""\
[jobd]
database = {json.dumps(database)}
modules = ["jobd_lab_routines"]
pythonpath = ["{APP_DIR}"]
log_level = "info"

[pool]
min_workers = {min_workers}
max_workers = {max_workers}
graceful_timeout = "5s"

[store]
# Long, so that a job that waits for this poll shows up: producers must wake
# the master through its socket (group jobd may write to it).
poll_interval = "5s"
heartbeat_interval = "500ms"
"""


def install_jobd(lab: Lab, unit_file: Path) -> None:
    """docs/systemd.md, steps 2-6, in the lab (step 1: Debian's python3 is there).

    The unit is started by the tests, not here (`enable` without `--now`).
    """
    wheels = lab.share / "wheels"
    wheelhouse.build(wheels)
    # 3. the virtualenv; pip comes from the test's own interpreter (visible in
    #    the lab), which saves ensurepip's seconds. The application is not a
    #    package here: its module goes to /srv/jobd-app (pythonpath).
    lab.run("/usr/bin/python3", "-m", "venv", "--without-pip", VENV)
    lab.run(
        sys.executable, "-m", "pip", "--python", f"{VENV}/bin/python", "install", "--quiet",
        "--no-index", "--find-links", str(wheels), "jobd",
        timeout=300,
    )  # fmt: skip
    # 2. the service user, and the application's user in its group
    lab.sh(
        "useradd --system --user-group --home-dir /var/lib/jobd --shell /usr/sbin/nologin jobd\n"
        f"useradd --system --user-group --groups jobd --shell /usr/sbin/nologin {PRODUCER}\n"
        f"install -d -m 0755 {APP_DIR} {GATES}\n"
        "install -d -m 0755 /etc/jobd\n"
    )
    for name in ("jobd_lab_routines.py", "lab_client.py"):
        lab.write(f"{APP_DIR}/{name}", (HERE / name).read_text())
    # 4. the config, readable by group jobd only
    lab.write(CONFIG, config_toml(), mode="0640", owner="root:jobd")
    # 5. the state directory and the schema, as the service user
    lab.sh(
        "install -d -o jobd -g jobd -m 2770 /var/lib/jobd\n"
        f"runuser -u jobd -- {VENV}/bin/jobd -c {CONFIG} db upgrade\n"
        "chmod 0660 /var/lib/jobd/jobd.db\n"
    )
    # 6. the unit, unchanged
    lab.write("/etc/systemd/system/jobd.service", unit_file.read_text())
    lab.systemctl("daemon-reload")
    lab.systemctl("enable", "jobd")
