"""Like with like: contexts declared in the space, per-context studies, ASHA within a context,
control arms paired with their unmodified trial (checked on a real sweep's tables)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest
from ray.tune.schedulers import TrialScheduler

from paitune.config.sweep import SweepOptions
from paitune.errors import PaituneError
from paitune.search.asha import ContextASHA, pair_key, read_state
from paitune.search.plan import plan_sweep
from paitune.search.sweep import execute_sweep
from paitune.spaces import compile_space, load_space, load_space_text
from paitune.spaces.context import context_id, parse_context_id

CTL = SimpleNamespace()


def _trial(tid, **config):
    # a config of its own per trial id (the seed), unless the test gives one
    seed = sum(map(ord, tid))
    return SimpleNamespace(trial_id=tid, config={"method": "snip", "control": "none", "seed": seed, **config})


def _asha(tmp_path, **kw):
    return ContextASHA(metric="val_acc", mode="max", max_t=8, grace_period=1, reduction_factor=2,
                       state_path=tmp_path / "asha.json", **kw)  # fmt: skip


def test_context_id_is_stable_and_readable():
    config = {"dataset": "digits", "model": "mlp", "sparsity": 0.875, "epochs": 16, "method": "snip", "seed": 3}
    cid = context_id(config)
    assert cid == "dataset=digits,model=mlp,sparsity=0.875,epochs=16"
    assert parse_context_id(cid) == {"dataset": "digits", "model": "mlp", "sparsity": "0.875", "epochs": "16"}
    assert context_id({**config, "method": "random", "seed": 0}) == cid  # choices and seeds are not context


def test_space_declares_its_context_and_contexts_are_enumerated():
    compiled = compile_space(load_space("default"))
    assert compiled.context_keys == ("dataset", "model", "sparsity", "epochs")
    assert [c["sparsity"] for c in compiled.contexts()] == [0.75, 0.875, 0.9375, 0.96875]
    assert compiled.control_arms == ["shuffle"]
    inner = compiled.for_context(compiled.contexts()[0])
    assert "sparsity" not in inner.space.params and "control" not in inner.space.params
    assert inner.settings["sparsity"] == 0.75 and inner.settings["control"] == "none"


@pytest.mark.parametrize(
    "text, message",
    [
        ("context: [seed]\n", "the seed is the replicate axis"),
        ("context: [method]\n", "it is a choice the sweep compares"),
        ("context: [colour]\n", "unknown context key"),
        ("params:\n  sparsity: {type: float, low: 0.5, high: 0.9}\n", "a context parameter must list its values"),
    ],
)
def test_bad_context_declarations_are_one_line_errors(text, message):
    with pytest.raises(PaituneError, match=message):
        load_space_text("settings: {dataset: digits, model: mlp, epochs: 2}\n" + text)


def test_a_searched_sparsity_is_a_choice_when_left_out_of_the_context():
    space = load_space_text(
        "context: [dataset, model, epochs]\nsettings: {dataset: digits, model: mlp, epochs: 2}\n"
        "params:\n  sparsity: {type: float, low: 0.5, high: 0.9}\n"
    )
    assert len(compile_space(space).contexts()) == 1


def test_asha_compares_a_trial_only_with_its_own_context(tmp_path):
    asha = _asha(tmp_path)
    easy, hard = "dataset=d,sparsity=0.5", "dataset=d,sparsity=0.97"
    for tid, ctx, acc in [("e1", easy, 0.95), ("e2", easy, 0.96), ("h1", hard, 0.30)]:
        asha.on_trial_add(CTL, _trial(tid, context=ctx))
        # far behind the easy context, but the first of its own: never stopped for that
        assert (
            asha.on_trial_result(CTL, _trial(tid, context=ctx), {"epoch": 1, "val_acc": acc}) == TrialScheduler.CONTINUE
        )
    # a context with fewer than min_rung_trials (ceil(2) = 2) records stops nobody
    assert (
        asha.on_trial_result(CTL, _trial("h2", context=hard), {"epoch": 1, "val_acc": 0.10}) == TrialScheduler.CONTINUE
    )
    # with two records of its own context, the hard context decides among its own trials
    assert asha.on_trial_result(CTL, _trial("h3", context=hard), {"epoch": 1, "val_acc": 0.05}) == TrialScheduler.STOP
    assert (
        asha.on_trial_result(CTL, _trial("h4", context=hard), {"epoch": 1, "val_acc": 0.31}) == TrialScheduler.CONTINUE
    )
    assert set(asha.rungs()) == {easy, hard}
    assert asha.decision_epochs() == (1, 2, 4)


def test_control_arm_stops_with_its_partner_and_never_before_it(tmp_path):
    asha = _asha(tmp_path)
    ctx = "c"
    for seed, acc in [(1, 0.9), (2, 0.95)]:
        asha.on_trial_result(CTL, _trial(f"t{seed}", context=ctx, seed=seed), {"epoch": 1, "val_acc": acc})
    partner = _trial("p", context=ctx, seed=0)
    arm = _trial("s", context=ctx, seed=0, control="shuffle")
    assert pair_key(partner.config) == pair_key(arm.config)
    # the arm is never ranked: a poor arm continues while its partner runs
    assert asha.on_trial_result(CTL, arm, {"epoch": 1, "val_acc": 0.01}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(CTL, partner, {"epoch": 1, "val_acc": 0.96}) == TrialScheduler.CONTINUE
    # the arm reports epoch 2 before its partner: it trains on...
    assert asha.on_trial_result(CTL, arm, {"epoch": 2, "val_acc": 0.9}) == TrialScheduler.CONTINUE
    for seed, acc in [(1, 0.9), (2, 0.95)]:
        asha.on_trial_result(CTL, _trial(f"t{seed}", context=ctx, seed=seed), {"epoch": 2, "val_acc": acc})
    # ...and the partner, behind its context at epoch 2, is stopped there all the same: ASHA's
    # decision does not depend on which of the two the cluster ran first
    assert asha.on_trial_result(CTL, partner, {"epoch": 2, "val_acc": 0.1}) == TrialScheduler.STOP
    # the arm, past that epoch, stops at its next report; the pair is compared at epoch 2
    assert asha.on_trial_result(CTL, arm, {"epoch": 4, "val_acc": 0.9}) == TrialScheduler.STOP
    state = read_state(tmp_path / "asha.json")
    assert state["stopped_at"] == {"p": 2.0, "s": 4.0} and state["pair_stopped"] == {pair_key(arm.config): 2.0}
    assert pair_key(arm.config) in state["rungs"][ctx]["2"]  # the partner's record, under the pair's key
    # an arm behind its partner stops at the partner's epoch
    late = _trial("i", context=ctx, seed=0, control="invert")
    assert asha.on_trial_result(CTL, late, {"epoch": 1, "val_acc": 0.5}) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(CTL, late, {"epoch": 2, "val_acc": 0.5}) == TrialScheduler.STOP


def test_the_retry_of_a_trial_that_passed_a_rung_is_not_counted_there_again(tmp_path):
    """A trial lost with its driver after passing a rung runs again under a new Tune trial: the
    rung keeps one record of the config, so the next trial meets the rung the uninterrupted sweep
    would have shown it (there: too few records to stop anybody)."""
    asha = _asha(tmp_path)  # min_rung_trials = 2
    first = _trial("t1", context="c", seed=0)
    assert asha.on_trial_result(CTL, first, {"epoch": 1, "val_acc": 0.8}) == TrialScheduler.CONTINUE
    restored = _asha(tmp_path)
    retry = _trial("t1-retry", context="c", seed=0)  # same config and seed, new Tune trial
    assert restored.on_trial_result(CTL, retry, {"epoch": 1, "val_acc": 0.8}) == TrialScheduler.CONTINUE
    (rungs,) = restored.rungs().values()
    assert len(rungs[0][1]) == 1
    # one record only: a poor newcomer is not stopped by a rung holding the same config twice
    other = _trial("t2", context="c", seed=1)
    assert restored.on_trial_result(CTL, other, {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.CONTINUE


def test_context_rungs_survive_a_restart(tmp_path):
    import pickle

    first = _asha(tmp_path)
    built = pickle.dumps(_asha(tmp_path))  # Tune pickles the scheduler when the Tuner is built
    for tid, acc in [("a", 0.9), ("b", 0.8)]:
        first.on_trial_result(CTL, _trial(tid, context="x"), {"epoch": 1, "val_acc": acc})
    assert first.on_trial_result(CTL, _trial("c", context="x"), {"epoch": 1, "val_acc": 0.1}) == TrialScheduler.STOP
    restored = pickle.loads(built)
    assert restored.rungs() == first.rungs()
    # c re-runs from its checkpoint: stopped where it was stopped
    assert restored.on_trial_result(CTL, _trial("c", context="x"), {"epoch": 1, "val_acc": 0.99}) == TrialScheduler.STOP


SPACE = """
name: ctx
settings: {dataset: digits, model: mlp, epochs: 4, batch_size: 64, lr: 0.05, allocation: erk, prune_batch_size: 256}
params:
  sparsity: {type: categorical, choices: [0.5, 0.9375]}
  method: {type: categorical, choices: [random, magnitude, snip]}
  control: {type: categorical, choices: [none, shuffle]}
seeds: [0, 1]
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
num_samples: 12
"""


@pytest.mark.ray
@pytest.mark.slow
def test_a_sweep_covers_every_context_ranks_within_it_and_pairs_its_controls(ray_session, tmp_path):
    space_file = tmp_path / "ctx.yaml"
    space_file.write_text(SPACE)
    plan = plan_sweep(SweepOptions(space=str(space_file), out=str(tmp_path), name="ctx", max_concurrent=2, verbose=0))
    assert plan.total_trials == 12 * 2 + 2  # 12 sampled, each with its shuffle arm, + a dense reference per seed
    execute_sweep(plan)
    trials = pd.read_parquet(tmp_path / "ctx" / "trials")
    epochs = pd.read_parquet(tmp_path / "ctx" / "epochs")
    assert len(trials) == plan.total_trials and trials.trial_id.is_unique
    pruned = trials[trials.method != "dense"]
    assert (pruned.context == [context_id(json.loads(c)) for c in pruned.config_json]).all()
    none = pruned[pruned.control == "none"]

    # every context covered, with its fair share, and >= 3 methods among its unmodified trials
    share = none.groupby("sparsity").size()
    assert sorted(share.index) == [0.5, 0.9375] and (share == 6).all()
    assert (none.groupby("sparsity").method.nunique() == 3).all()

    # every stopped trial was behind at least one trial of its own context at the epoch it stopped
    acc = epochs.set_index(["trial_id", "epoch"]).val_acc
    stopped = none[none.status == "stopped"]
    for row in stopped.itertuples():
        mine = acc[(row.trial_id, row.epochs_run)]
        rivals = none[
            (none.context == row.context) & (none.trial_id != row.trial_id) & (none.epochs_run >= row.epochs_run)
        ]
        ahead = [acc[(t, row.epochs_run)] for t in rivals.trial_id if (t, row.epochs_run) in acc.index]
        assert any(a > mine for a in ahead), row.trial_id

    # every control has its unmodified partner (same config but the control, same seed) and reached
    # the epoch its partner ended at (an arm is never stopped before its partner)
    arms = pruned[pruned.control != "none"]
    assert len(arms) == len(none)
    by_pair = {pair_key(json.loads(c)): r for c, r in zip(none.config_json, none.itertuples())}
    for row in arms.itertuples():
        partner = by_pair[pair_key(json.loads(row.config_json))]
        assert partner.seed == row.seed and partner.method == row.method and partner.sparsity == row.sparsity
        assert row.epochs_run >= partner.epochs_run
        if partner.status == "completed":
            assert row.epochs_run == partner.epochs_run

    # one Optuna study per context, holding only that context's sampled trials
    from paitune.search.contexts import load_context_studies
    from paitune.search.study_store import study_storage

    studies = load_context_studies(study_storage(tmp_path / "ctx"), "ctx")
    assert set(studies) == set(none.context)
    for cid, study in studies.items():
        asked = [t for t in study.trials if "tune_trial_id" in t.user_attrs and "duplicate_of" not in t.user_attrs]
        assert {t.user_attrs["tune_trial_id"] for t in asked} == set(none[none.context == cid].trial_id)


def test_an_arm_stops_where_its_partner_diverged_or_failed(tmp_path):
    asha = _asha(tmp_path)
    for control_free_end in ("diverged", "failed"):
        seed = 1 if control_free_end == "diverged" else 2
        partner = _trial(f"p{seed}", context="c", seed=seed)
        arm = _trial(f"s{seed}", context="c", seed=seed, control="shuffle")
        assert asha.on_trial_result(CTL, arm, {"epoch": 1, "val_acc": 0.5}) == TrialScheduler.CONTINUE
        if control_free_end == "diverged":
            asha.on_trial_complete(CTL, partner, {"epoch": 2, "val_acc": float("nan"), "pai_status": "diverged"})
        else:
            partner.last_result = {"epoch": 2, "val_acc": 0.4}
            asha.on_trial_error(CTL, partner)
        assert asha.on_trial_result(CTL, arm, {"epoch": 2, "val_acc": 0.5}) == TrialScheduler.STOP


def test_accuracy_vs_density_keeps_both_objectives_with_sparsity_as_a_choice():
    import optuna
    from optuna.trial import TrialState

    from paitune.search.contexts import ContextSearch
    from paitune.search.samplers import make_sampler

    space = load_space_text(
        "context: [dataset, model, epochs]\nsettings: {dataset: digits, model: mlp, epochs: 3}\n"
        "params:\n  method: {type: categorical, choices: [random, snip]}\n"
        "  sparsity: {type: float, low: 0.5, high: 0.99}\nseeds: [0]\n"
        "objectives: [{metric: val_acc, mode: max}, {metric: density_achieved, mode: min}]\n"
    )
    search = ContextSearch(
        compile_space(space), metric=["val_acc", "density_achieved"], mode=["max", "min"],
        sampler_factory=lambda i, held: make_sampler("nsga2", seed=i, n_objectives=2),
        storage=optuna.storages.InMemoryStorage(), study_name="mo", budget=4,
    )  # fmt: skip
    configs = [search.suggest(f"t{i}") for i in range(4)]
    assert search.suggest("t4") == "FINISHED"
    assert len({c["sparsity"] for c in configs}) == 4  # sparsity is searched, within one context
    for i, config in enumerate(configs):
        search.on_trial_complete(f"t{i}", {"epoch": 3, "max_epochs": 3, "val_acc": 0.5 + i / 10,
                                           "density_achieved": 1 - config["sparsity"]})  # fmt: skip
    (study,) = search.studies.values()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert all(len(t.values) == 2 for t in study.trials)


def test_the_scheduler_picks_the_first_pending_trial_without_scanning_finished_ones():
    import pickle

    from paitune.search.asha import LiveTrials

    live = LiveTrials()
    trials = [SimpleNamespace(trial_id=str(i), status=s) for i, s in
              enumerate(["TERMINATED", "RUNNING", "PAUSED", "PENDING", "ERROR", "PENDING"])]  # fmt: skip
    for trial in trials:
        live.add(trial)
    assert live.choose() is trials[3]  # the first pending one, in the order Tune added them
    assert set(live._trials) == {"1", "2", "3", "4", "5"}  # finished ones leave as the scan passes them
    trials[3].status = trials[5].status = "RUNNING"
    assert live.choose() is trials[2]  # no pending trial: the first paused one
    assert set(live._trials) == {"1", "2", "3", "5"}
    trials[1].status = "PENDING"  # a failed trial Tune retries is pending again
    assert live.choose() is trials[1]
    assert pickle.loads(pickle.dumps(live))._trials == {}  # Tune re-adds the trials it restores
