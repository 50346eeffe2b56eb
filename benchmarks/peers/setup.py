"""Create one virtualenv per peer job system under benchmarks/.venvs/<venv>.

Run with plain ``python3 benchmarks/peers/setup.py [--force] [venv ...]``.
Each venv gets its peer at a pinned version plus psutil (the adapters read
RSS with it).  A venv counts as complete when its ``versions.json`` exists:
that file is written last, after a successful install, and records the
installed versions that the benchmark driver prints and publishes.  Complete
venvs are skipped, so running this twice is cheap.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

VENVS_DIR = Path(__file__).resolve().parent.parent / ".venvs"

PSUTIL = "psutil==7.2.2"

# venv name -> pinned requirements.  huey-sqlite and huey-redis share "huey".
REQUIREMENTS: dict[str, list[str]] = {
    "huey": ["huey==3.5.4", "redis==8.1.0", PSUTIL],
    "celery": ["celery[redis]==5.7.0", PSUTIL],
    "rq": ["rq==3.0.0", PSUTIL],
    "dramatiq": ["dramatiq[redis]==2.2.1", PSUTIL],
    "procrastinate": ["procrastinate==3.10.0", "psycopg[binary,pool]==3.3.9", PSUTIL],
    # typer 0.29 breaks `pgq run` 1.6.0 (its LogLevel option arrives as a str).
    "pgqueuer": ["pgqueuer[asyncpg]==1.6.0", "typer==0.28.0", PSUTIL],
}

# Distributions whose installed versions are worth publishing, per venv.
REPORTED = {
    "huey": ["huey", "redis"],
    "celery": ["celery", "kombu", "billiard", "redis"],
    "rq": ["rq", "redis"],
    "dramatiq": ["dramatiq", "redis"],
    "procrastinate": ["procrastinate", "psycopg", "psycopg-binary"],
    "pgqueuer": ["pgqueuer", "asyncpg", "uvloop", "typer"],
}


def venv_python(name: str) -> Path:
    return VENVS_DIR / name / "bin" / "python"


def versions_file(name: str) -> Path:
    return VENVS_DIR / name / "versions.json"


def installed_versions(name: str) -> dict[str, str]:
    """Ask the venv's own interpreter for the versions of REPORTED packages."""
    code = (
        "import json, sys, importlib.metadata as m\n"
        "out = {}\n"
        "for d in sys.argv[1:] + ['psutil']:\n"
        "    try: out[d] = m.version(d)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run(
        [str(venv_python(name)), "-c", code, *REPORTED[name]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def build(name: str, force: bool) -> dict[str, str]:
    """Create and fill one venv unless it is already complete."""
    if versions_file(name).exists() and not force:
        print(f"[setup] {name}: complete, skipped")
        return json.loads(versions_file(name).read_text())
    target = VENVS_DIR / name
    if target.exists():
        shutil.rmtree(target)
    print(f"[setup] {name}: creating venv and installing {REQUIREMENTS[name]}")
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(venv_python(name)), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS[name]], check=True)
    versions = installed_versions(name)
    versions_file(name).write_text(json.dumps(versions, indent=2) + "\n")
    print(f"[setup] {name}: {versions}")
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venvs", nargs="*", help=f"subset of {sorted(REQUIREMENTS)}")
    parser.add_argument("--force", action="store_true", help="rebuild even if complete")
    args = parser.parse_args(argv)
    names = args.venvs or list(REQUIREMENTS)
    unknown = set(names) - set(REQUIREMENTS)
    if unknown:
        parser.error(f"unknown venv(s): {sorted(unknown)}")
    VENVS_DIR.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in names:
        try:
            build(name, args.force)
        except subprocess.CalledProcessError as exc:
            print(f"[setup] {name}: FAILED ({exc})", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
