"""Paired comparisons over seeds, as the experiment's protocol fixes them before its runs.

Every comparison pairs runs of one seed (same data order, same upstream), so its data are the
per-seed differences d_i = TLEG − comparator (top-1 points). On them:

- `summarise`: n, the mean difference, its standard error and the two-sided 95 % t interval.
- `superiority`: one-sided paired t-test of mean d > 0.
- `two_sided`: the two-sided paired t-test (secondary, per-depth comparisons).
- `tost`: two one-sided tests for equivalence within ±margin (the 90 % interval inside it).
- `holm`: Holm's step-down adjustment of a family of p-values.
- `verdict`: the word a comparison earns. A comparison that is neither a win (or loss) at the
  protocol's level nor shown equivalent is "inconclusive", never a "tie".

Pure functions on lists of floats; scipy gives the t distribution.
"""

from __future__ import annotations

import math
import statistics

import scipy.stats

ALPHA = 0.05


def summarise(diffs: list[float]) -> dict:
    """n, mean, se and the two-sided 95 % t interval of the mean (None where n < 2)."""
    n = len(diffs)
    if n == 0:
        return {"n": 0, "diff": None, "se": None, "ci95": None}
    mean = statistics.fmean(diffs)
    if n < 2:
        return {"n": 1, "diff": mean, "se": None, "ci95": None}
    se = statistics.stdev(diffs) / math.sqrt(n)
    half = float(scipy.stats.t.ppf(0.975, n - 1)) * se
    return {"n": n, "diff": mean, "se": se, "ci95": [mean - half, mean + half]}


def _p_greater(mean: float, se: float, n: int, shift: float = 0.0) -> float:
    """P(T >= t) for t = (mean - shift) / se with n - 1 degrees of freedom; se = 0 decides by the sign."""
    if se == 0:
        return 0.0 if mean > shift else 1.0
    return float(scipy.stats.t.sf((mean - shift) / se, n - 1))


def superiority(diffs: list[float]) -> dict:
    """One-sided paired t-test of H1: mean difference > 0."""
    s = summarise(diffs)
    s["p"] = None if s["se"] is None else _p_greater(s["diff"], s["se"], s["n"])
    return s


def two_sided(diffs: list[float]) -> dict:
    s = summarise(diffs)
    if s["se"] is None:
        s["p"] = None
    elif s["se"] == 0:
        s["p"] = 1.0 if s["diff"] == 0 else 0.0
    else:
        s["p"] = float(2 * scipy.stats.t.sf(abs(s["diff"]) / s["se"], s["n"] - 1))
    return s


def tost(diffs: list[float], margin: float) -> dict:
    """Equivalence within ±margin: H1 is -margin < mean < margin. p is the larger of the two one-sided
    p-values; `ci90` (the interval TOST at 5 % checks against the margin) is reported beside ci95."""
    s = summarise(diffs)
    if s["se"] is None:
        return {**s, "p": None, "ci90": None, "margin": margin}
    n, mean, se = s["n"], s["diff"], s["se"]
    p_low = _p_greater(mean, se, n, -margin)         # H0: mean <= -margin
    p_high = _p_greater(-mean, se, n, -margin)       # H0: mean >= +margin
    half = float(scipy.stats.t.ppf(0.95, n - 1)) * se
    return {**s, "p": max(p_low, p_high), "ci90": [mean - half, mean + half], "margin": margin}


def holm(pvalues: dict) -> dict:
    """Holm's step-down adjusted p-values (monotone, capped at 1); None stays None."""
    known = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda pk: pk[0])
    m, out, running = len(known), {k: None for k, p in pvalues.items() if p is None}, 0.0
    for i, (p, k) in enumerate(known):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def verdict(test: dict, kind: str, p: float | None = None, alpha: float = ALPHA) -> str:
    """The word for a comparison. `kind`: "superiority" (win if p < alpha), "equivalence" (equivalent
    if TOST p < alpha) or "two_sided" (win / loss by the sign). `p` overrides test["p"] (e.g. Holm's).
    A superiority or equivalence test that fails can still be a loss, or a win, when the 95 %
    interval excludes 0; anything else is inconclusive."""
    p = test.get("p") if p is None else p
    if p is None:
        return "n/a"
    ci = test.get("ci95")
    if kind == "superiority" and p < alpha:
        return "win"
    if kind == "equivalence" and p < alpha:
        return "equivalent"
    if kind == "two_sided":
        return ("win" if test["diff"] > 0 else "loss") if p < alpha else "inconclusive"
    if ci is not None and ci[1] < 0:
        return "loss"
    if ci is not None and ci[0] > 0 and kind == "equivalence":
        return "win"
    return "inconclusive"
