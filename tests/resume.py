"""A training run resumed from a checkpoint after its first epoch, beside the same run uninterrupted."""

from __future__ import annotations

import io

import torch

from paitune.training import Trainer


def straight_and_resumed(build, data, cfg) -> tuple[Trainer, Trainer, dict]:
    """(the run of ``cfg.epochs`` epochs, the same run saved after epoch 1 and resumed to the end,
    the checkpoint it resumed from); ``build()`` gives a fresh (model, masks) each time. The
    checkpoint goes through a file and is loaded as the trial function loads it (weights_only)."""
    straight = Trainer(*build(), data, cfg)
    for _ in range(cfg.epochs):
        straight.run_epoch()
    first = Trainer(*build(), data, cfg)
    first.run_epoch()
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = Trainer(*build(), data, cfg)
    resumed.load_state_dict(state)
    while resumed.epoch < cfg.epochs:
        resumed.run_epoch()
    return straight, resumed, state


def assert_same_run(straight: Trainer, resumed: Trainer) -> None:
    """Bit-identical: the same history (timings aside) and the same final weights."""
    strip = lambda h: [m.to_dict() | {"seconds": 0} for m in h]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
