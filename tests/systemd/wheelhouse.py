"""Wheels of jobd and of everything it needs, made without the network.

The systemd tests install jobd in the lab the way docs/systemd.md says: a
fresh virtualenv and `pip install`. pip there gets `--no-index` and this
wheelhouse. Options weighed for the dependencies:

- the machine's package index: it lacks some of them (sdnotify, setproctitle);
- PyPI: the tests must not need the network;
- the wheels pip would build or download: not kept anywhere we can count on;
- the distributions installed in the environment running the tests (chosen):
  they are exactly the versions the rest of the suite runs with, and an
  installed distribution lists its files in RECORD, so repacking it as a
  wheel is a zip of those files. Console scripts (outside site-packages)
  are left out: pip writes them again from entry_points.txt.

jobd itself is installed editable here, so its wheel is built, as pip
would build it, from a copy of the source tree (a build writes into the
tree it builds). Its build backend comes from the package indexes in pip's
own configuration with the default index (PyPI) replaced by an empty one.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
SOURCE_FILES = ("pyproject.toml", "README.md", "jobd")
SKIPPED = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def build(dest: Path) -> list[Path]:
    """Write the wheels of jobd and its runtime dependencies into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = [build_jobd(dest)]
    for dist in runtime_closure("jobd"):
        wheels.append(repack(dist, dest))
    return wheels


def build_jobd(dest: Path) -> Path:
    source = dest / "jobd-source"
    for name in SOURCE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, source / name)
    no_default_index = dest / "no-index"
    no_default_index.mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(dest),
         str(source)],
        env={**os.environ, "PIP_INDEX_URL": no_default_index.as_uri()},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"building the jobd wheel failed:\n{result.stdout}{result.stderr}")
    shutil.rmtree(source)
    no_default_index.rmdir()
    return next(dest.glob("jobd-*.whl"))


def runtime_closure(name: str) -> list[metadata.Distribution]:
    """The installed distributions `name` needs at run time, `name` excluded."""
    seen: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, frozenset[str]]] = [(name, frozenset())]
    while todo:
        current, extras = todo.pop()
        dist = metadata.distribution(current)
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is not None and not any(
                requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}
            ):
                continue
            key = canonicalize_name(requirement.name)
            if key not in seen:
                seen[key] = metadata.distribution(requirement.name)
                todo.append((requirement.name, frozenset(requirement.extras)))
            elif requirement.extras:
                todo.append((requirement.name, frozenset(requirement.extras)))
    return list(seen.values())


def compressed_tag(wheel_info: str) -> str:
    """The file name's tag for all `Tag:` lines: py2-none-any, py3-none-any -> py2.py3-none-any."""
    tags = re.findall(r"^Tag: (\S+)$", wheel_info, re.MULTILINE) or ["py3-none-any"]
    parts = zip(*(tag.split("-") for tag in tags), strict=True)
    return "-".join(".".join(dict.fromkeys(values)) for values in parts)


def repack(dist: metadata.Distribution, dest: Path) -> Path:
    """An installed distribution as a wheel (its site-packages files only)."""
    wheel_info = dist.read_text("WHEEL") or ""
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = dest / f"{name}-{dist.version}-{compressed_tag(wheel_info)}.whl"
    base = Path(str(dist.locate_file("")))
    tops = {str(file).split("/")[0] for file in dist.files or ()}
    info_dir = next(top for top in tops if top.endswith(".dist-info"))
    records: list[tuple[str, str, str]] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in dist.files or ():
            relative = str(file)
            parts = relative.split("/")
            if relative.startswith("..") or "__pycache__" in parts:
                continue
            if parts[0] == info_dir and parts[-1] in SKIPPED:
                continue
            data = (base / relative).read_bytes()
            archive.writestr(relative, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append((relative, f"sha256={digest.decode()}", str(len(data))))
        records.append((f"{info_dir}/RECORD", "", ""))
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(records)
        archive.writestr(f"{info_dir}/RECORD", out.getvalue())
    return path
