"""Independent random streams derived from ``prune``'s one seed.

Each purpose gets its own salt, so that e.g. the shuffle control's permutation does not depend on
whether the method itself drew random numbers, and a new method's draws never shift an old one's.
A purpose not listed in ``SALTS`` (a plug-in's method or control) is salted by a hash of its name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch

SALTS = {"scores": 0, "shuffle": 1, "reinit": 2, "corrupt": 3, "ntk_sap": 4, "phew": 5}


def _salt(purpose: str) -> int:
    if purpose in SALTS:
        return SALTS[purpose]
    # A fixed function of the name (Python's hash() changes per process), above the listed salts.
    return len(SALTS) + int.from_bytes(hashlib.sha256(purpose.encode("utf-8")).digest()[:6], "big")


def derived_seed(seed: int, purpose: str) -> int:
    return (int(seed) * 1_000_003 + _salt(purpose)) % (2**63)


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for ``purpose``: the same seed draws the same numbers on every device."""
    return torch.Generator().manual_seed(derived_seed(seed, purpose))


@contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Within the block, torch's global generators (the CPU's and ``device``'s when it is a GPU)
    start from ``seed`` (purpose "global_rng"), and the caller's state is restored after it.

    A model's own random layers draw from the global generator: dropout in a train-mode scoring
    pass (SNIP, ProsPr, PX, ...) would otherwise make the mask depend on whatever the caller drew
    before, not on ``prune``'s seed, and scoring would advance the caller's stream.
    """
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        value = derived_seed(seed, "global_rng")
        torch.default_generator.manual_seed(value)
        if devices:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(value)
        yield
