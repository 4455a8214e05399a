"""Vectorized statistics shared by the analyses: percentile bootstrap CIs, Kendall's W.

Bootstrap: percentile intervals from ``N_BOOT`` resamples drawn with a fixed seed, so every run of
the analysis prints the same numbers. Many small groups are bootstrapped at once: groups are
batched by size, and all groups of one size share one matrix of resample counts (each group's
marginal bootstrap distribution is still exact; only the draws are shared), so the work is a few
matrix products instead of a Python loop per group.

Longer than the other modules on purpose: every test and interval a verdict rests on is here, so a
reviewer checks the statistics in one place.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
import pandas as pd

N_BOOT = 1000
SEED = 0
LEVEL = 0.95

# The fewest runs a statistic may rest on; below it the analysis reports "too_few_runs" / null.
MIN_RUNS_CI = 2  # a mean's CI needs two independent runs
MIN_RUNS_CORRELATION = 5  # a rank correlation over fewer points is noise
MIN_CONTEXTS = 3  # rankings / concordance across contexts
LARGE_N = 5000  # above this many points a CI uses the normal approximation (see each function)

# Bound on the elements of one (groups x resamples) block, to keep memory flat at any size.
_BLOCK_ELEMENTS = 4_000_000


def resample_counts(rng: np.random.Generator, n_boot: int, k: int) -> np.ndarray:
    """(n_boot, k) multinomial counts: how often each of k items is drawn in each resample."""
    draws = rng.integers(0, k, size=(n_boot, k)) + (np.arange(n_boot) * k)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * k).reshape(n_boot, k).astype(np.float64)


ReplicateFn = Callable[[list[np.ndarray], np.ndarray], np.ndarray]


def grouped_bootstrap(
    codes: np.ndarray,
    columns: list[np.ndarray],
    replicate: ReplicateFn,
    *,
    n_groups: int,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    level: float = LEVEL,
    min_size: int = MIN_RUNS_CI,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile CI per group of a statistic computed by ``replicate``.

    ``codes`` assigns each observation to a group 0..n_groups-1; ``columns`` are the per-observation
    arrays the statistic needs. ``replicate(mats, counts)`` gets each column reshaped to
    (groups, k) and a (n_boot, k) count matrix and returns (groups, n_boot) replicate values.
    Returns (ci_low, ci_high, n) with NaN CIs for groups smaller than ``min_size``.
    """
    codes = np.asarray(codes, dtype=np.int64)
    low = np.full(n_groups, np.nan)
    high = np.full(n_groups, np.nan)
    sizes = np.bincount(codes, minlength=n_groups)
    order = np.argsort(codes, kind="stable")
    sorted_cols = [np.asarray(c, dtype=np.float64)[order] for c in columns]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    for k in np.unique(sizes):
        if k < min_size:
            continue
        k = int(k)
        groups = np.flatnonzero(sizes == k)
        # Blocks of resamples x groups small enough that counts and data stay a few MB each.
        boot_rows = max(1, min(n_boot, _BLOCK_ELEMENTS // k))
        per_block = max(1, _BLOCK_ELEMENTS // (boot_rows * k))
        count_blocks = (
            [resample_counts(rng, min(boot_rows, n_boot - start), k) for start in range(0, n_boot, boot_rows)]
            if n_boot * k <= 4 * _BLOCK_ELEMENTS
            else None
        )
        for start in range(0, len(groups), per_block):
            block = groups[start : start + per_block]
            positions = starts[block][:, None] + np.arange(k)[None, :]
            mats = [col[positions] for col in sorted_cols]
            reps = np.empty((len(block), n_boot))
            for i, b0 in enumerate(range(0, n_boot, boot_rows)):
                counts = (
                    count_blocks[i]
                    if count_blocks is not None
                    else resample_counts(rng, min(boot_rows, n_boot - b0), k)
                )
                with np.errstate(invalid="ignore", divide="ignore"):
                    reps[:, b0 : b0 + len(counts)] = replicate(mats, counts)
            with np.errstate(invalid="ignore"), warnings.catch_warnings():
                # A group whose every resample is degenerate (e.g. constant ranks) has no CI.
                warnings.simplefilter("ignore", RuntimeWarning)
                low[block], high[block] = np.nanquantile(reps, [alpha, 1.0 - alpha], axis=1)
    return low, high, sizes


def _bootstrap_small_groups(codes, arrays, replicates, sizes, **bootstrap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``grouped_bootstrap`` over the groups of at most ``LARGE_N`` rows only; returns (low,
    high, large): the caller fills the large groups' intervals from normal theory, which the
    bootstrap agrees with at that size."""
    large = sizes > LARGE_N
    keep = ~large[codes]
    low, high, _ = grouped_bootstrap(
        codes[keep], [a[keep] for a in arrays], replicates, n_groups=len(sizes), **bootstrap
    )
    return low, high, large


def _pearson_replicates(mats: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    x, y = mats
    ct = counts.T
    n = counts.sum(axis=1)[None, :]
    sx, sy = x @ ct, y @ ct
    sxx, syy, sxy = (x * x) @ ct, (y * y) @ ct, (x * y) @ ct
    cov = sxy - sx * sy / n
    var = (sxx - sx * sx / n) * (syy - sy * sy / n)
    return np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def _whole_if_ungrouped(frame: pd.DataFrame, by: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """``frame`` and ``by``, with one group of every row (column ``_all``) when ``by`` is empty."""
    return (frame.assign(_all=0), ["_all"]) if not by else (frame, list(by))


def _ranked_groups(frame: pd.DataFrame, by: list[str]):
    """(grouper, each row's group code, the groups' keys in code order, by) of ``frame`` by ``by``."""
    frame, by = _whole_if_ungrouped(frame, by)
    grouper = frame.groupby(by, sort=True, dropna=False, observed=True)
    return grouper, grouper.ngroup().to_numpy(), grouper.size().reset_index()[by], by


def grouped_spearman(
    frame: pd.DataFrame,
    by: list[str],
    x: str,
    y: str,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    min_size: int = MIN_RUNS_CORRELATION,
) -> pd.DataFrame:
    """Spearman's rho of x and y within each group, with a bootstrap CI.

    rho is the Pearson correlation of the within-group ranks (average ranks for ties), exactly
    as scipy.stats.spearmanr computes it. Resamples reuse those ranks rather than re-ranking each
    resample (the usual shortcut; the two agree to within the resampling noise), which keeps the
    bootstrap to a few matrix products. Groups under ``min_size`` points get NaN.
    """
    frame = frame.loc[frame[x].notna() & frame[y].notna()]
    grouper, codes, keys, by = _ranked_groups(frame, by)
    rx = grouper[x].rank(method="average").to_numpy(dtype=np.float64)
    ry = grouper[y].rank(method="average").to_numpy(dtype=np.float64)
    n_groups = len(keys)
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    sum_x = np.bincount(codes, rx, n_groups)
    sum_y = np.bincount(codes, ry, n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.bincount(codes, rx * ry, n_groups) - sum_x * sum_y / sizes
        var_x = np.bincount(codes, rx * rx, n_groups) - sum_x**2 / sizes
        var_y = np.bincount(codes, ry * ry, n_groups) - sum_y**2 / sizes
        rho = cov / np.sqrt(var_x * var_y)
    rho[(sizes < min_size) | ~np.isfinite(rho)] = np.nan
    # Large groups: the bootstrap and the normal-theory interval agree there, so use the cheap
    # one: Fisher z with the Bonett-Wright variance for Spearman, (1 + rho^2 / 2) / (n - 3).
    low, high, large = _bootstrap_small_groups(
        codes, [rx, ry], _pearson_replicates, sizes, n_boot=n_boot, seed=seed, min_size=min_size
    )
    if large.any():
        low[large], high[large] = _fisher_z_interval(rho[large], sizes[large] - 3)
    out = keys.copy()
    out["n"] = sizes.astype(np.int64)
    out["spearman"] = rho
    out["ci_low"] = np.where(np.isnan(rho), np.nan, low)
    out["ci_high"] = np.where(np.isnan(rho), np.nan, high)
    return out.drop(columns=["_all"], errors="ignore")


def _fisher_z_interval(rho: np.ndarray, dof: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal-approximation CI of a Spearman (or partial) correlation on Fisher's z scale
    (Bonett-Wright variance (1 + rho^2 / 2) / dof), for groups too large to bootstrap."""
    from scipy.stats import norm

    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    half = norm.ppf(0.5 + LEVEL / 2) * np.sqrt((1 + rho**2 / 2) / dof)
    return np.tanh(z - half), np.tanh(z + half)


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance W with the correction for ties.

    ``ranks`` is (m contexts, n choices), each row the ranks within one context (average ranks
    for ties). W = 12 S / (m^2 (n^3 - n) - m T), S the squared deviation of the rank sums from
    their mean, T = sum over contexts and tie groups of (t^3 - t). 1 = every context ranks the
    choices the same way, 0 = no agreement.
    """
    m, n = ranks.shape
    if m < 2 or n < 2:
        return float("nan")
    rank_sums = ranks.sum(axis=0)
    s = float(((rank_sums - rank_sums.mean()) ** 2).sum())
    # Tie groups: runs of equal values in each sorted row; a new run starts at every change and
    # at every row start, so one cumulative sum numbers all runs of all rows at once.
    sorted_rows = np.sort(ranks, axis=1)
    starts = np.ones_like(sorted_rows, dtype=bool)
    starts[:, 1:] = sorted_rows[:, 1:] != sorted_rows[:, :-1]
    t = np.bincount(np.cumsum(starts.ravel()) - 1).astype(np.float64)
    tie_total = float((t**3 - t).sum())
    denominator = m * m * (n**3 - n) - m * tie_total
    return s * 12.0 / denominator if denominator > 0 else float("nan")


def friedman_p_value(w: float, m: int, n: int) -> float:
    """p-value of the Friedman test implied by W: chi2 = m (n - 1) W with n - 1 dof."""
    from scipy.stats import chi2

    if not np.isfinite(w) or n < 2:
        return float("nan")
    return float(chi2.sf(m * (n - 1) * w, n - 1))


# A residual variance below this share of the raw variance means the controls explain the
# variable completely (e.g. a proxy that is a monotone function of the parameter count).
_EXPLAINED = 1e-9


def _partial_from_moments(cov: np.ndarray) -> np.ndarray:
    """Partial correlation of variables 0 and 1 given variables 2.. from covariance matrices.

    ``cov`` is (..., 2 + q, 2 + q). The residual covariance of (0, 1) after projecting out the
    controls is C_aa - C_ac C_cc^+ C_ca; the pseudo-inverse (eigenvalues below a relative
    tolerance dropped) makes collinear or constant controls harmless: parameter count and FLOPs
    are often almost the same ranking. A variable the controls explain entirely has partial
    correlation 0 (there is nothing left in it to correlate).
    """
    c_aa = cov[..., :2, :2]
    c_ac = cov[..., :2, 2:]
    c_cc = cov[..., 2:, 2:]
    values, vectors = np.linalg.eigh(c_cc)
    scale = np.maximum(values.max(axis=-1, keepdims=True), 1e-300)
    inverse_values = np.where(values > 1e-10 * scale, 1.0 / np.where(values > 0, values, 1.0), 0.0)
    c_cc_pinv = (vectors * inverse_values[..., None, :]) @ np.swapaxes(vectors, -1, -2)
    residual = c_aa - c_ac @ c_cc_pinv @ np.swapaxes(c_ac, -1, -2)
    var_x, var_y, cov_xy = residual[..., 0, 0], residual[..., 1, 1], residual[..., 0, 1]
    explained = (var_x <= _EXPLAINED * c_aa[..., 0, 0]) | (var_y <= _EXPLAINED * c_aa[..., 1, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov_xy / np.sqrt(np.where(explained, 1.0, var_x * var_y))
    degenerate = (c_aa[..., 0, 0] <= 0) | (c_aa[..., 1, 1] <= 0)
    return np.where(degenerate, np.nan, np.where(explained, 0.0, np.clip(r, -1.0, 1.0)))


def _moment_matrices(sums: list[np.ndarray], products: dict, n: np.ndarray) -> np.ndarray:
    """Covariance matrices (..., p, p) from sums of each variable and of each pair's product."""
    p = len(sums)
    cov = np.empty(sums[0].shape + (p, p))
    for i in range(p):
        for j in range(i, p):
            cov[..., i, j] = cov[..., j, i] = products[i, j] / n - sums[i] * sums[j] / (n * n)
    return cov


def _partial_replicates(mats: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    ct = counts.T
    n = counts.sum(axis=1)[None, :]
    sums = [m @ ct for m in mats]
    products = {(i, j): (mats[i] * mats[j]) @ ct for i in range(len(mats)) for j in range(i, len(mats))}
    return _partial_from_moments(_moment_matrices(sums, products, n))


def grouped_partial_spearman(
    frame: pd.DataFrame,
    by: list[str],
    x: str,
    y: str,
    controls: list[str],
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    min_size: int = MIN_RUNS_CORRELATION,
) -> pd.DataFrame:
    """Partial Spearman correlation of x and y controlling for ``controls``, per group, with CI.

    Every variable is rank-transformed within the group (average ranks for ties), the controls'
    ranks are regressed out of x's and y's ranks (least squares with intercept), and the
    residuals are correlated. The bootstrap reuses the ranks (as ``grouped_spearman`` does) and
    redoes the regression in every resample; groups above LARGE_N points use Fisher's z with the
    Bonett-Wright variance, (1 + r^2 / 2) / (n - 3 - q). Returns {by, n, partial, ci_low, ci_high}.
    """
    names = [x, y] + list(controls)
    frame = frame.loc[frame[names].notna().all(axis=1)]
    grouper, codes, keys, by = _ranked_groups(frame, by)
    ranks = [grouper[name].rank(method="average").to_numpy(dtype=np.float64) for name in names]
    n_groups = len(keys)
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    sums = [np.bincount(codes, r, n_groups) for r in ranks]
    products = {
        (i, j): np.bincount(codes, ranks[i] * ranks[j], n_groups)
        for i in range(len(ranks))
        for j in range(i, len(ranks))
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        partial = _partial_from_moments(_moment_matrices(sums, products, np.maximum(sizes, 1.0)))
    partial[sizes < min_size] = np.nan
    large = sizes > LARGE_N
    keep = ~large[codes]
    low, high, _ = grouped_bootstrap(
        codes[keep],
        [r[keep] for r in ranks],
        _partial_replicates,
        n_groups=n_groups,
        n_boot=n_boot,
        seed=seed,
        min_size=min_size,
    )
    if large.any():
        low[large], high[large] = _fisher_z_interval(partial[large], np.maximum(sizes[large] - 3 - len(controls), 1.0))
    out = keys.copy()
    out["n"] = sizes.astype(np.int64)
    out["partial"] = partial
    out["ci_low"] = np.where(np.isnan(partial), np.nan, low)
    out["ci_high"] = np.where(np.isnan(partial), np.nan, high)
    return out.drop(columns=["_all"], errors="ignore")


# ---- small-sample inference over independent units (seeds, dataset x model groups) -----------

ALPHA = 1.0 - LEVEL
# The fewest independent units (seeds; dataset x model groups for transfer) a verdict may rest
# on. Two seeds give a t-interval with one degree of freedom: far too wide to decide anything.
MIN_UNITS = 3
# Two accuracies (fractions) count as equal within 1 point: the margin of every equivalence claim
# about accuracy (no_effect, matches_imp, no_difference), shown by TOST.
ACCURACY_MARGIN = 0.01


def grouped_t_test(
    frame: pd.DataFrame,
    by: list[str],
    value: str,
    *,
    null: float = 0.0,
    level: float = LEVEL,
    margin: float | None = None,
) -> pd.DataFrame:
    """Per group of units: mean, Student-t CI and two-sided t-test of mean == ``null``.

    One row of ``frame`` is one independent unit (e.g. one seed's mean over contexts). Returns
    {by, n_units, mean, sd, ci_low, ci_high, p} and, with ``margin``, ``p_equivalent``: the TOST
    p-value (Schuirmann 1987) of |mean - null| < margin (the larger of the two one-sided p).
    Groups with fewer than two units get null CIs and p. A group whose units are all equal has
    sd 0, where the t statistic is undefined: its p is the exact sign-flip p (``all_equal_p``),
    2 / 2^n when the mean differs from ``null`` and 1 when it equals it.
    """
    from scipy.stats import t as student_t

    frame = frame.loc[frame[value].notna()]
    frame, by = _whole_if_ungrouped(frame, by)
    grouped = frame.groupby(by, sort=True, dropna=False, observed=True)[value]
    out = grouped.agg(n_units="size", mean="mean", sd="std").reset_index()
    n = out["n_units"].to_numpy(dtype=np.float64)
    mean = out["mean"].to_numpy(dtype=np.float64)
    sd = np.nan_to_num(out["sd"].to_numpy(dtype=np.float64), nan=0.0)
    dof = np.maximum(n - 1.0, 1.0)
    se = sd / np.sqrt(np.maximum(n, 1.0))
    q = student_t.ppf(0.5 + level / 2.0, dof)
    ok = n >= 2
    # A spread of a few ULPs is rounding, not variation: treat it as exactly 0.
    zero = se <= 1e-12 * np.maximum(1.0, np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_stat = np.where(
            zero,
            np.where(np.isclose(mean, null, rtol=0, atol=1e-12), 0.0, np.inf * np.sign(mean - null)),
            (mean - null) / np.where(zero, 1.0, se),
        )
        p = np.where(np.isinf(t_stat), all_equal_p(n), 2.0 * student_t.sf(np.abs(t_stat), dof))
    out["ci_low"] = np.where(ok, mean - q * se, np.nan)
    out["ci_high"] = np.where(ok, mean + q * se, np.nan)
    out["p"] = np.where(ok, p, np.nan)
    if margin is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            lower = np.where(
                zero,
                np.where(mean - null > -margin, all_equal_p(n, sides=1), 1.0),
                student_t.sf((mean - (null - margin)) / np.where(zero, 1.0, se), dof),
            )
            upper = np.where(
                zero,
                np.where(mean - null < margin, all_equal_p(n, sides=1), 1.0),
                student_t.cdf((mean - (null + margin)) / np.where(zero, 1.0, se), dof),
            )
        out["p_equivalent"] = np.where(ok, np.maximum(lower, upper), np.nan)
    return out.drop(columns=["_all"], errors="ignore")


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values (step-down Bonferroni); NaN entries stay NaN and are not counted
    among the tests. Equal to statsmodels ``multipletests(method="holm")`` (checked in the tests);
    computed here because that function runs a full garbage collection on every call (~0.1 s),
    which dominated the analysis of small tables."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    valid = np.isfinite(p)
    m = int(valid.sum())
    if m:
        values = p[valid]
        order = np.argsort(values, kind="stable")
        adjusted = np.maximum.accumulate((m - np.arange(m)) * values[order])
        result = np.empty(m)
        result[order] = np.minimum(adjusted, 1.0)
        out[valid] = result
    return out


def fisher_z_combine(rho: np.ndarray, n: np.ndarray, *, level: float = LEVEL) -> tuple[float, float, float, int]:
    """Combine per-context correlations: (mean, ci_low, ci_high, n_contexts).

    Each context's correlation is put on Fisher's z scale. With at least MIN_UNITS contexts the
    mean z gets a Student-t interval over contexts (each context one unit, so variation between
    contexts widens it); with fewer, a fixed-effect interval from the contexts' sizes (weights
    n - 3, Bonett-Wright variance for Spearman). The result is mapped back with tanh.
    """
    from scipy.stats import norm
    from scipy.stats import t as student_t

    rho, n = np.asarray(rho, dtype=np.float64), np.asarray(n, dtype=np.float64)
    keep = np.isfinite(rho) & (n > 3)
    rho, n = rho[keep], n[keep]
    m = len(rho)
    if m == 0:
        return float("nan"), float("nan"), float("nan"), 0
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    if m >= MIN_UNITS:
        mean = float(z.mean())
        sd = float(z.std(ddof=1))
        half = student_t.ppf(0.5 + level / 2.0, m - 1) * sd / np.sqrt(m)
    else:
        w = n - 3.0
        mean = float((w * z).sum() / w.sum())
        var = float((w * w * (1 + rho**2 / 2) / w).sum() / w.sum() ** 2)
        half = norm.ppf(0.5 + level / 2.0) * np.sqrt(var)
    return float(np.tanh(mean)), float(np.tanh(mean - half)), float(np.tanh(mean + half)), m


def all_equal_p(n, sides: int = 2):
    """The p of n units that all differ from the null by the same amount, where a t statistic is
    undefined (sd 0): the exact sign-flip test's, (sides) / 2^n. Under the null each unit's sign
    is a fair coin, so n units agreeing is no stronger evidence than that, however small the
    spread: accuracies measured on a finite test set are discrete, and equal differences are
    common, not impossible, without an effect (3 seeds: 0.25; 5: 0.0625; 6: 0.03125)."""
    return np.minimum(1.0, sides * 0.5 ** np.asarray(n, dtype=np.float64))


def t_test_p(diff: np.ndarray) -> float:
    """Two-sided p of a one-sample t-test of mean(diff) = 0 (paired differences over units).
    With no spread at all, the exact sign-flip p (``all_equal_p``) when the mean is not 0 (every
    unit agrees) and 1 when it is."""
    from scipy.stats import t as student_t

    n = len(diff)
    mean, sd = float(np.mean(diff)), float(np.std(diff, ddof=1)) if n > 1 else 0.0
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return float(all_equal_p(n)) if abs(mean) > 1e-12 else 1.0
    return float(2 * student_t.sf(abs(mean) / (sd / np.sqrt(n)), n - 1))


# ---- tests whose unit is a config (permutation) or a split of the seeds (cross-fitting) --------

# Permutations drawn when a permutation test cannot enumerate its group (fixed seed: SEED).
N_PERMUTATIONS = 9999


def grouped_rank_residuals(frame: pd.DataFrame, by: list[str], x: str, controls: list[str]) -> np.ndarray:
    """Per row: x's rank within its group (average ranks for ties), minus the least-squares fit
    (with intercept) on the controls' ranks within the group, scaled to unit norm per group.

    The sum over a group of the products of two such columns is their partial Spearman
    correlation given the controls (the Pearson correlation of the rank residuals), exactly as
    ``grouped_partial_spearman`` computes it, pseudo-inverse and all; with no controls it is the
    Spearman correlation. A variable the controls explain entirely gets 0 (its partial correlation
    is 0); a constant one (or a group of one row) NaN.
    """
    frame, by = _whole_if_ungrouped(frame, by)
    grouper = frame.groupby(by, sort=True, dropna=False, observed=True)
    codes = grouper.ngroup().to_numpy()
    n_groups = int(codes.max()) + 1 if len(codes) else 0
    sizes = np.bincount(codes, minlength=n_groups).astype(np.float64)
    centered = []
    for name in [x] + list(controls):
        ranks = grouper[name].rank(method="average").to_numpy(dtype=np.float64)
        centered.append(ranks - (np.bincount(codes, ranks, n_groups) / np.maximum(sizes, 1.0))[codes])
    resid = centered[0]
    raw = np.bincount(codes, resid * resid, n_groups)
    q = len(controls)
    if q:
        z = np.stack(centered[1:], axis=1)  # (rows, q)
        czz = np.empty((n_groups, q, q))
        czx = np.empty((n_groups, q))
        for i in range(q):
            czx[:, i] = np.bincount(codes, z[:, i] * resid, n_groups)
            for j in range(i, q):
                czz[:, i, j] = czz[:, j, i] = np.bincount(codes, z[:, i] * z[:, j], n_groups)
        values, vectors = np.linalg.eigh(czz)
        scale = np.maximum(values.max(axis=-1, keepdims=True), 1e-300)
        inverse = np.where(values > 1e-10 * scale, 1.0 / np.where(values > 0, values, 1.0), 0.0)
        beta = np.einsum("gij,gj,gkj,gk->gi", vectors, inverse, vectors, czx)
        resid = resid - (z * beta[codes]).sum(axis=1)
    var = np.bincount(codes, resid * resid, n_groups)
    explained = var <= _EXPLAINED * raw
    with np.errstate(invalid="ignore", divide="ignore"):
        out = resid / np.sqrt(np.where(explained, 1.0, var))[codes]
    out[explained[codes]] = 0.0
    out[(raw <= 0)[codes]] = np.nan
    return out


def crossed_permutation_p(
    cross: np.ndarray, levels: tuple[int, ...], *, n_resamples: int = N_PERMUTATIONS, seed: int = SEED
) -> float:
    """Two-sided p of a permutation test whose units are the cells of a crossed design.

    The cells are the combinations of factor levels (e.g. method x allocation x hyperparameter
    setting), ``levels`` the number of levels per factor, cell index = ``np.ravel_multi_index``.
    ``cross[j, k]`` is what pairing cell j's x values with cell k's y values adds to the
    statistic (summed over contexts and matched trials), so the observed statistic is the trace
    and the one of a relabelling g is sum_k cross[g(k), k]. The relabellings permute the levels
    of each factor independently (the same permutation in every context): under the null that x
    and y are unrelated and the levels of a factor are exchangeable, every relabelling is as
    likely as the observed one, with the structure of the design (what the cells of one method
    share) kept. The p is the share of relabellings whose |statistic| is at least the observed
    one: all prod(levels!) of them (the observed among them) when there are at most
    ``n_resamples``, else ``n_resamples`` drawn with ``seed`` and the observed counted once more
    ((1 + hits) / (1 + n_resamples)). The smallest p it can give is 1 / prod(levels!).
    (``scipy.stats.permutation_test`` permutes samples of equal length only; the factors here
    have different numbers of levels.)
    """
    import itertools
    import math

    cross = np.asarray(cross, dtype=np.float64)
    levels = tuple(int(v) for v in levels)
    k = int(np.prod(levels))
    strides = np.ones(len(levels), dtype=np.int64)
    for f in range(len(levels) - 2, -1, -1):
        strides[f] = strides[f + 1] * levels[f + 1]
    columns = np.arange(k)
    observed = abs(float(np.trace(cross)))
    tolerance = 1e-9 * max(observed, 1e-300)
    total = math.prod(math.factorial(v) for v in levels)
    rng = np.random.default_rng(seed)
    exact = total <= n_resamples

    def batches():
        if exact:
            product = itertools.product(*(itertools.permutations(range(v)) for v in levels))
            while chunk := list(itertools.islice(product, 4096)):
                yield [np.array([c[f] for c in chunk], dtype=np.int64) for f in range(len(levels))]
        else:
            for start in range(0, n_resamples, 4096):
                size = min(4096, n_resamples - start)
                yield [rng.permuted(np.tile(np.arange(v), (size, 1)), axis=1) for v in levels]

    hits = 0
    for perms in batches():
        size = perms[0].shape[0]
        cell = np.zeros((size,) + levels, dtype=np.int64)
        for f, p in enumerate(perms):
            shape = [size] + [1] * len(levels)
            shape[f + 1] = levels[f]
            cell = cell + p.reshape(shape) * strides[f]
        values = np.abs(cross[cell.reshape(size, k), columns].sum(axis=-1))
        hits += int((values >= observed - tolerance).sum())
    return hits / total if exact else (1 + hits) / (1 + n_resamples)


def one_sided_t_p(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(p of mean > 0, p of mean < 0): one-sample t-tests along ``axis`` (at least two values).
    With no spread at all (the t statistic undefined) the exact one-sided sign-flip p: 1 / 2^n on
    the side the mean lies on, 1 on the other (1 both when the mean is 0)."""
    from scipy.stats import t as student_t

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[axis]
    mean = values.mean(axis=axis)
    sd = values.std(axis=axis, ddof=1)
    flat = sd <= 1e-12 * np.maximum(1.0, np.abs(mean))
    with np.errstate(divide="ignore", invalid="ignore"):
        t_stat = mean / np.where(flat, 1.0, sd / np.sqrt(n))
    agree = all_equal_p(n, sides=1)
    greater = np.where(flat, np.where(mean > 1e-12, agree, 1.0), student_t.sf(t_stat, n - 1))
    less = np.where(flat, np.where(mean < -1e-12, agree, 1.0), student_t.cdf(t_stat, n - 1))
    return greater, less


def quantile_aggregated_p(p_values, gamma: float = 0.5) -> float:
    """One p from the p-values of many sample splits (Meinshausen, Meier and Buehlmann 2009):
    min(1, q / gamma), q the ceil(gamma S)-th smallest of the S p-values. Valid whatever the
    dependence between the splits (it rejects at alpha only when a share gamma of them has
    p <= gamma alpha); gamma = 0.5 doubles the median."""
    p = np.sort(np.asarray(p_values, dtype=np.float64))
    if len(p) == 0:
        return float("nan")
    q = p[int(np.ceil(gamma * len(p))) - 1]
    return float(min(1.0, q / gamma))
