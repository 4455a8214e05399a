"""The experiment directory ``DIR/NAME/`` and paitune's own state files in it.

Layout: ``trials/ epochs/ layers/`` (Parquet, the results), paitune's own state — ``sweep.json``
(the resolved space and options, so ``--resume`` needs nothing else), ``optuna.journal`` (the
Optuna study, see ``paitune.search.study_store``: the sampler's history survives a driver crash),
``asha.json`` (ASHA's rungs), ``ray.pids`` (the Ray processes a running driver started), ``.lock``
— and ``tune/``, Tune's experiment (its snapshots and per-trial checkpoints). Tune's restore copies
every ``*.json``/``*.pkl`` at the top of its experiment folder into its staging folder and uploads
them back, so paitune's files must not sit there: they live one level up.

With a URI ``--out`` the state files live in a local folder (``default_state_dir``, or
``--state-dir``) and are mirrored next to the tables (``mirror_state``), so the experiment there is
whole; a resume on a machine without them fetches them back (``fetch_state``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.results.storage import Location, locate
from paitune.search.study_store import STUDY_FILE
from paitune.spaces import Space

MANIFEST = "sweep.json"
TUNE_DIR = "tune"  # Tune's experiment folder inside DIR/NAME


def default_state_dir(out: str) -> Path:
    """Local home of paitune's state for the URI ``out``: one folder per URI under the user's cache."""
    digest = hashlib.sha256(out.rstrip("/").encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "paitune" / "sweeps" / digest


def read_manifest(experiment: str | Path | Location) -> dict[str, Any]:
    """The planned sweep saved in an experiment folder (a local path or a URI)."""
    source = locate(experiment).join(MANIFEST)
    try:
        with source.fs.open_input_stream(source.path) as stream:
            return json.loads(stream.read().decode())
    except (OSError, ValueError) as err:
        raise PaituneError(f"--resume: cannot read {source}: {err}") from None


def write_manifest(experiment_dir: Path, options: SweepOptions, space: Space) -> None:
    manifest = {"options": asdict(options), "space": space.model_dump(mode="json")}
    tmp = experiment_dir / f".{MANIFEST}.tmp"
    # No sort_keys: the order of params is the order they are sampled in.
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, experiment_dir / MANIFEST)


def state_files() -> tuple[str, ...]:
    """What a resume needs besides Tune's own experiment."""
    from paitune.search.asha import STATE_FILES

    return (MANIFEST, STUDY_FILE, *STATE_FILES)


def mirror_state(experiment_dir: Path, results: Location) -> None:
    """With a URI --out (``results`` not local), copy paitune's state files next to the tables, so
    the experiment there is whole (and a resume on another machine finds the study as it was when
    the sweep stopped)."""
    if results.local:
        return
    results.fs.create_dir(results.path, recursive=True)
    for name in state_files():
        source = experiment_dir / name
        if source.exists():
            pafs.copy_files(str(source), results.join(name).path,
                            source_filesystem=pafs.LocalFileSystem(), destination_filesystem=results.fs)  # fmt: skip


def fetch_state(experiment_dir: Path, results: Location) -> None:
    """On --resume with a URI --out and no local state (another machine): fetch the mirrored state."""
    if results.local or (experiment_dir / MANIFEST).exists():
        return
    experiment_dir.mkdir(parents=True, exist_ok=True)
    for name in state_files():
        source = results.join(name)
        if source.exists():
            pafs.copy_files(source.path, str(experiment_dir / name),
                            source_filesystem=results.fs, destination_filesystem=pafs.LocalFileSystem())  # fmt: skip
