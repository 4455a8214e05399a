"""Fill ``.whl/`` with what paitune needs at run time on the lent GPU machine and its image lacks.

Run by ``bench/device/prepare.sh`` on a machine that reaches the package registries. It

1. reads paitune's runtime requirements from ``pyproject.toml`` ([project] dependencies);
2. reads the names of the Python packages the GPU image already holds from the device library's
   KINDS.md (section "Python packages already there");
3. walks the dependency closure for CPython 3.12 on Linux x86-64: a requirement the image holds is
   left to the image (noted in ``.whl/closure.json`` with its version specifier, so the device can
   check it), any other one is pinned to the version installed in ``.venv``, downloaded as a wheel
   (``pip download --no-deps``) and its own ``Requires-Dist`` (top-level dist-info only, markers
   evaluated for 3.12/linux with the extras asked for) followed in turn;
4. repacks ray's wheel as ``ray-nojars.tar.xz`` without the folders in ``RAY_DROP``;
5. removes anything else from ``.whl/`` (two versions of one package stop the device's install),
   writes ``.whl/closure.json`` and ``.whl/MANIFEST.txt`` and prints the sizes.

torch is never carried: the image holds its own CUDA build.
"""

from __future__ import annotations

import argparse
import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections import deque
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
KINDS_MD = Path(os.environ.get("KINDS_MD", "/work/.library/device/KINDS.md"))

# The device's interpreter (KINDS.md: Python 3.12.3 at /opt/torch/.venv/bin/python3, x86-64 Linux).
TARGET_ENV = {
    "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
    "implementation_version": "3.12.3", "platform_python_implementation": "CPython", "os_name": "posix",
    "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
}  # fmt: skip
# The image is Ubuntu 24.04 (Python 3.12.3): glibc 2.39, so any manylinux_2_N with N <= 39 loads.
PLATFORMS = ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"] + [
    f"manylinux_2_{n}_x86_64" for n in range(5, 40)
]
NEVER_CARRY = {"torch"}  # the image's own CUDA build; carrying one would shadow it
# Held by the image, carried anyway: pydantic 2.14 needs typing-extensions>=4.16, newer than the image
# may hold (KINDS.md gives no version for it). Pure Python, backward compatible, so shadowing the
# image's copy for torch and the rest is harmless.
OVERLAY = {"typing-extensions"}

RAY_ARCHIVE = "ray-nojars.tar.xz"
# Folders of ray's wheel that Tune + ray.init never load (see README.md beside this file):
#   jars: Java workers only.  rllib: reinforcement learning library, imported by nothing in
#   ray.tune/ray.train/ray._private.  dashboard/client/build: the web UI's static files, read only by
#   ray/dashboard/http_server_head.py, which runs only when the dashboard serves its frontend; paitune
#   always calls ray.init(include_dashboard=False) (-> --disable-frontend), and without aiohttp_cors/
#   opencensus/opentelemetry (not in the image) the dashboard runs --minimal, which never serves it.
RAY_DROP = ("ray/jars", "ray/rllib", "ray/dashboard/client/build")

MIB = 1 << 20


def log(msg: str) -> None:
    print(msg, flush=True)


def image_packages(path: Path) -> set[str]:
    """Canonical names from KINDS.md's "Python packages already there" section."""
    text = path.read_text()
    section = text.split("## Python packages already there", 1)
    if len(section) != 2:
        raise SystemExit(f"{path}: no section 'Python packages already there'")
    match = re.search(r"Packages:\s*(.+?)\.\s*$", section[1], re.S | re.M)
    if not match:
        raise SystemExit(f"{path}: no 'Packages:' list in 'Python packages already there'")
    names = {canonicalize_name(n.strip()) for n in match.group(1).split(",") if n.strip()}
    if len(names) < 50 or "torch" not in names:
        raise SystemExit(f"{path}: the package list looks wrong ({len(names)} names)")
    return names


def venv_pins(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    pins = {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def runtime_requirements(pyproject: Path) -> list[Requirement]:
    data = tomllib.loads(pyproject.read_text())
    return [Requirement(r) for r in data["project"]["dependencies"]]


def applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    if not extras:
        return req.marker.evaluate({**TARGET_ENV, "extra": ""})
    return any(req.marker.evaluate({**TARGET_ENV, "extra": e}) for e in extras)


def wheel_ok(filename: str) -> bool:
    """cp312 or pure-Python, and Linux x86-64 or any platform."""
    _, _, _, tags = parse_wheel_filename(filename)
    for tag in tags:
        interp_ok = tag.interpreter in ("py3", "cp312") or tag.interpreter.startswith("py3")
        abi_ok = tag.abi in ("none", "cp312", "abi3")
        plat = tag.platform
        plat_ok = plat == "any" or (plat.endswith("_x86_64") and plat.startswith("manylinux"))
        if plat.startswith("manylinux_2_"):
            plat_ok = plat_ok and int(plat.split("_")[2]) <= 39
        if interp_ok and abi_ok and plat_ok:
            return True
    return False


def download(python: str, name: str, version: str, dest: Path) -> Path:
    """The wheel of name==version for the device (cp312, manylinux x86-64), into dest."""
    existing = find_wheel(dest, name, version)
    if existing is not None:
        return existing
    cmd = [python, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "--abi", "cp312", "--abi", "abi3", "--abi", "none",
           "-d", str(dest), f"{name}=={version}"]  # fmt: skip
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    run = subprocess.run(cmd, capture_output=True, text=True)
    found = find_wheel(dest, name, version)
    if run.returncode != 0 or found is None:
        raise SystemExit(f"pip download {name}=={version} failed:\n{run.stderr[-3000:]}")
    return found


def find_wheel(folder: Path, name: str, version: str) -> Path | None:
    for path in folder.glob("*.whl"):
        wname, wversion, _, _ = parse_wheel_filename(path.name)
        if wname == canonicalize_name(name) and wversion == Version(version):
            return path
    return None


def wheel_metadata(path: Path):
    """The top-level dist-info's METADATA (ray's wheel nests vendored packages' dist-infos)."""
    with zipfile.ZipFile(path) as zf:
        tops = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        if len(tops) != 1:
            raise SystemExit(f"{path.name}: expected one top-level METADATA, found {tops}")
        return email.parser.Parser().parsestr(zf.read(tops[0]).decode())


def resolve(python: str, image: set[str], pins: dict[str, str], dest: Path) -> dict:
    """Breadth-first closure of paitune's runtime requirements. Returns the carried packages
    {name: {version, wheel, extras, required_by}} and the image's [{requirement, required_by}]."""
    carried: dict[str, dict] = {}
    from_image: list[dict] = []
    queue: deque[tuple[Requirement, str]] = deque((r, "paitune") for r in runtime_requirements(ROOT / "pyproject.toml"))
    metadata_done: dict[str, set[str]] = {}  # name -> extras whose requirements were followed
    while queue:
        req, parent = queue.popleft()
        name = canonicalize_name(req.name)
        if name in NEVER_CARRY or (name in image and name not in OVERLAY):
            # Its marker, if any, held (applies()): what is left to check is name and version.
            entry = {"name": name, "specifier": str(req.specifier), "required_by": parent}
            if entry not in from_image:
                from_image.append(entry)
            continue
        if name not in pins:
            raise SystemExit(f"{req} (needed by {parent}) is not installed in .venv: install it there first, "
                             "so its version can be pinned")  # fmt: skip
        version = pins[name]
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            raise SystemExit(f"{parent} needs {req}, but .venv holds {name} {version}")
        entry = carried.setdefault(name, {"version": version, "extras": set(), "required_by": set()})
        entry["required_by"].add(parent)
        entry["extras"] |= set(req.extras)
        wanted = set(req.extras)
        done = metadata_done.get(name)
        if done is not None and wanted <= done:
            continue
        path = download(python, name, version, dest)
        if not wheel_ok(path.name):
            raise SystemExit(f"{path.name}: not a cp312/py3 manylinux x86-64 or pure-Python wheel")
        entry["wheel"] = path.name
        meta = wheel_metadata(path)
        extras = (done or set()) | wanted
        metadata_done[name] = extras
        for line in meta.get_all("Requires-Dist") or []:
            dep = Requirement(line)
            if applies(dep, extras) and (done is None or not applies(dep, done)):
                queue.append((dep, f"{name}=={version}"))
    for entry in carried.values():
        entry["extras"] = sorted(entry["extras"])
        entry["required_by"] = sorted(entry["required_by"])
    return {"carried": carried, "from_image": from_image}


def repack_ray(wheel: Path, archive: Path, version: str) -> dict:
    """ray's wheel, less RAY_DROP, as a tar.xz of ray/ and its dist-info (modes kept: the raylet
    and gcs_server binaries must stay executable). Skipped when the archive already holds this version
    with the same folders dropped."""
    stamp = archive.with_suffix(".json")
    want = {"version": version, "dropped": list(RAY_DROP), "wheel": wheel.name}
    if archive.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        log(f"{archive.name}: up to date ({version})")
        return want
    with tempfile.TemporaryDirectory(prefix="ray-repack-") as tmp:
        tmp = Path(tmp)
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                if any(info.filename == d or info.filename.startswith(d + "/") for d in RAY_DROP):
                    continue
                target = zf.extract(info, tmp)
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(target, mode)
        for d in RAY_DROP:
            if (tmp / d).exists():
                raise SystemExit(f"{d} still there after the repack")
        members = sorted(p.name for p in tmp.iterdir())
        log(f"{archive.name}: compressing {', '.join(members)} (xz -9, takes a minute or two) ...")
        partial = archive.with_name(archive.name + ".part")
        env = {**os.environ, "XZ_OPT": "-9 -T0"}
        subprocess.run(["tar", "-C", str(tmp), "--owner=0", "--group=0", "-cJf", str(partial), *members], check=True,
                       env=env)  # fmt: skip
        partial.replace(archive)
    stamp.write_text(json.dumps(want, indent=1) + "\n")
    return want


def tree_bytes() -> int:
    """What a device call sends besides carried paths: tracked files plus untracked-not-ignored ones."""
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           check=True, capture_output=True).stdout.split(b"\0")  # fmt: skip
    total = 0
    for f in files:
        p = ROOT / os.fsdecode(f)
        if f and p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=str(ROOT / ".venv/bin/python"), help="the venv whose versions are pinned")
    parser.add_argument("--dest", default=str(ROOT / ".whl"))
    parser.add_argument("--max-mib", type=float, default=56.0, help="fail when .whl/ holds more (default 56)")
    parser.add_argument("--call-mib", type=float, default=63.0,
                        help="fail when .whl/ plus the working tree that travels exceed this (limit 64)")
    args = parser.parse_args(argv)

    dest = Path(args.dest)
    dest.mkdir(exist_ok=True)
    image = image_packages(KINDS_MD)
    pins = venv_pins(args.python)
    with tempfile.TemporaryDirectory(prefix="paitune-wheels-") as tmp:
        # Wheels already in dest are reused; new ones land in tmp first, so dest never holds a
        # half-written or stale file.
        staging = Path(tmp)
        for existing in dest.glob("*.whl"):
            shutil.copy2(existing, staging / existing.name)
        closure = resolve(args.python, image, pins, staging)
        carried = closure["carried"]
        if "ray" not in carried:
            raise SystemExit("ray is not in the closure: pyproject.toml changed?")
        ray = carried["ray"]
        ray_wheel = staging / ray["wheel"]
        closure["ray_archive"] = repack_ray(ray_wheel, dest / RAY_ARCHIVE, ray["version"])
        keep = {RAY_ARCHIVE, Path(RAY_ARCHIVE).with_suffix(".json").name, "closure.json", "MANIFEST.txt"}
        for name, entry in carried.items():
            if name == "ray":
                entry["wheel"] = RAY_ARCHIVE
                continue
            keep.add(entry["wheel"])
            if not (dest / entry["wheel"]).exists():
                shutil.copy2(staging / entry["wheel"], dest / entry["wheel"])
        for path in dest.iterdir():
            if path.name not in keep:
                log(f"removing {path.name} (not in the closure)")
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    closure["python"] = TARGET_ENV["python_full_version"]
    closure["image_packages_from"] = str(KINDS_MD)
    (dest / "closure.json").write_text(json.dumps(closure, indent=1, sort_keys=True) + "\n")

    rows = []
    for name in sorted(carried):
        entry = carried[name]
        size = (dest / entry["wheel"]).stat().st_size
        rows.append((entry["wheel"], size, name, entry["version"], ", ".join(entry["required_by"])))
    width = max(len(r[0]) for r in rows)
    lines = [f"{w:<{width}}  {s / MIB:7.2f} MiB  <- {by}" for w, s, _, _, by in rows]
    total = sum(p.stat().st_size for p in dest.iterdir() if p.is_file())
    tree = tree_bytes()
    lines += [
        f"{'total of .whl/':<{width}}  {total / MIB:7.2f} MiB (limit {args.max_mib:g})",
        f"{'working tree that travels':<{width}}  {tree / MIB:7.2f} MiB",
        f"{'a call carrying .whl':<{width}}  {(total + tree) / MIB:7.2f} MiB (limit {args.call_mib:g}; the tool's 64)",
        "",
        "left to the image (checked there by bench/device/checks.py env):",
        *sorted(f"  {r['name']}{r['specifier']}  <- {r['required_by']}" for r in closure["from_image"]),
    ]
    (dest / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    if total > args.max_mib * MIB:
        log(f"FAIL: .whl/ holds {total / MIB:.2f} MiB, over {args.max_mib:g} MiB")
        return 1
    if total + tree > args.call_mib * MIB:
        log(f"FAIL: .whl/ plus the working tree is {(total + tree) / MIB:.2f} MiB, over {args.call_mib:g} MiB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
