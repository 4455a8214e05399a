"""Checks that bench/device/gpu_checks.sh runs on the GPU machine (standard library + what it checks).

  python3 bench/device/checks.py env [--site /tmp/site] [--closure .whl/closure.json]
      Every package carried in .whl/ is importable from --site at its pinned version; every
      requirement left to the image is met by the image's version (a miss is printed as MISMATCH);
      ray, ray.tune, optuna, pydantic and paitune's CLI import; torch sees CUDA. Exit 1 on a missing
      carried package, a failed import or no CUDA.

  python3 bench/device/checks.py place DIR/NAME [--gpus-per-trial 0.25]
      The trials table of a finished sweep: trial, status, method, node, device, seconds, error, and
      the most trials Tune ran at once (its experiment state). Exit 1 unless every trial completed on
      a cuda device and no more ran at once than 1 / gpus-per-trial.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def check_env(args) -> int:
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    closure = json.loads(Path(args.closure).read_text())
    site = Path(args.site).resolve()
    problems = 0
    dists = {}
    for d in md.distributions():  # in sys.path order: the first one found is the one imported
        dists.setdefault(canonicalize_name(d.metadata["Name"]), d)
    print(f"python {sys.version.split()[0]} at {sys.executable}; carried packages from {site}")
    for name, entry in sorted(closure["carried"].items()):
        dist = dists.get(name)
        where = Path(dist.locate_file("")).resolve() if dist else None
        if dist is None:
            print(f"  MISSING   {name}=={entry['version']}")
            problems += 1
        elif dist.version != entry["version"] or where != site:
            print(f"  WRONG     {name}=={entry['version']}: found {dist.version} at {where}")
            problems += 1
        else:
            print(f"  ok        {name}=={dist.version}")
    mismatches = 0
    for req in closure["from_image"]:
        dist = dists.get(req["name"])
        spec = SpecifierSet(req["specifier"])
        label = f"{req['name']}{req['specifier']} (for {req['required_by']})"
        if dist is None:
            print(f"  MISMATCH  {label}: not installed in the image")
            mismatches += 1
        elif not spec.contains(dist.version, prereleases=True):
            print(f"  MISMATCH  {label}: the image has {dist.version}")
            mismatches += 1
        else:
            print(f"  ok        {label}: image {dist.version}")
    for module in ("pydantic", "optuna", "ray", "ray.tune", "paitune.cli", "paitune.search.sweep"):
        try:
            mod = importlib.import_module(module)
            print(f"  import    {module}: ok ({getattr(mod, '__file__', '?')})")
        except Exception as e:  # any failure here means the runs cannot work
            print(f"  import    {module}: FAILED {type(e).__name__}: {e}")
            problems += 1
    try:
        import torch

        cuda = torch.cuda.is_available()
        print(f"  torch {torch.__version__}, cuda available: {cuda}"
              + (f", {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}" if cuda else ""))  # fmt: skip
    except Exception as e:
        print(f"  import    torch: FAILED {type(e).__name__}: {e}")
        cuda = False
    if not cuda:
        problems += 1
    print(f"env: {problems} problem(s), {mismatches} image version mismatch(es)")
    return 1 if problems else 0


def check_place(args) -> int:
    import pandas as pd

    from bench.gpu_packing import max_running, running_intervals
    from paitune.search.sweep import TUNE_DIR

    exp = Path(args.experiment)
    table = pd.read_parquet(exp / "trials")
    cols = ["trial_id", "status", "method", "node", "device", "prune_seconds", "train_seconds", "error"]
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_colwidth", 80):
        print(table[[c for c in cols if c in table.columns]].sort_values("trial_id").to_string(index=False))
    intervals = running_intervals(exp / TUNE_DIR)
    most = max_running(intervals)
    cap = int(round(1 / args.gpus_per_trial))
    devices = sorted(str(d) for d in table["device"].dropna().unique())
    all_cuda = len(table) > 0 and table["device"].notna().all() and all(d.startswith("cuda") for d in devices)
    all_done = bool((table["status"] == "completed").all())
    ok = all_cuda and all_done and most <= cap
    print(f"place: {len(table)} trials, devices {devices}, nodes {sorted(table['node'].dropna().unique())}, "
          f"all completed: {all_done}, at most {most} running at once (cap {cap} at {args.gpus_per_trial} GPU each): "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env")
    env.add_argument("--site", default="/tmp/site")
    env.add_argument("--closure", default=str(ROOT / ".whl/closure.json"))
    place = sub.add_parser("place")
    place.add_argument("experiment", help="the sweep's folder, OUT/NAME")
    place.add_argument("--gpus-per-trial", type=float, default=0.25)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # paitune and bench from the repo, as `python -m` would
    return check_env(args) if args.command == "env" else check_place(args)


if __name__ == "__main__":
    sys.exit(main())
