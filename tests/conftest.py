"""Shared fixtures: one real Ray instance for the whole test session (starting Ray costs seconds)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray (not local mode) with 2 CPUs, started once and shut down at the end."""
    import ray

    # Same output settings paitune sweep uses; set before Tune reads them.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="warning",
            _node_ip_address="127.0.0.1",
            # Trial workers inherit this; keeps test output readable.
            log_to_driver=False,
        )
    yield ray
    if started:
        ray.shutdown()
