"""The experiment's pre-registered statistics against scipy and hand computations."""

import math

import pytest
import scipy.stats

from tleg_dist.experiments import stats

DIFFS = [0.8, 0.3, 1.1, 0.5, 0.6]


def test_summary_and_interval_match_scipy():
    s = stats.summarise(DIFFS)
    res = scipy.stats.ttest_1samp(DIFFS, 0.0)
    lo, hi = res.confidence_interval(0.95)
    assert s["n"] == 5 and s["diff"] == pytest.approx(0.66)
    assert s["ci95"] == pytest.approx([lo, hi])
    assert s["se"] == pytest.approx(scipy.stats.sem(DIFFS))


def test_superiority_is_scipys_one_sided_test():
    assert stats.superiority(DIFFS)["p"] == pytest.approx(
        scipy.stats.ttest_1samp(DIFFS, 0.0, alternative="greater").pvalue)
    worse = [-d for d in DIFFS]
    assert stats.superiority(worse)["p"] > 0.99


def test_two_sided_is_scipys():
    assert stats.two_sided(DIFFS)["p"] == pytest.approx(scipy.stats.ttest_1samp(DIFFS, 0.0).pvalue)


def test_tost_by_hand():
    diffs, margin = [0.1, -0.05, 0.2, 0.0, 0.05], 0.5
    t = stats.tost(diffs, margin)
    n, mean, se = 5, 0.06, scipy.stats.sem(diffs)
    p_low = scipy.stats.t.sf((mean + margin) / se, n - 1)
    p_high = scipy.stats.t.sf((margin - mean) / se, n - 1)
    assert t["p"] == pytest.approx(max(p_low, p_high))
    half = scipy.stats.t.ppf(0.95, n - 1) * se
    assert t["ci90"] == pytest.approx([mean - half, mean + half])
    assert stats.verdict(t, "equivalence") == "equivalent"
    # the same differences shifted near the margin are not shown equivalent
    assert stats.verdict(stats.tost([d + 0.45 for d in diffs], margin), "equivalence") == "win"
    assert stats.verdict(stats.tost([0.9, -0.9, 0.3], margin), "equivalence") == "inconclusive"


def test_holm_step_down():
    adj = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adj["a"] == pytest.approx(0.03)
    assert adj["c"] == pytest.approx(0.06)
    assert adj["b"] == pytest.approx(0.06)  # monotone: never below a smaller p's adjustment
    assert adj["d"] is None
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": pytest.approx(1.0), "y": pytest.approx(1.0)}


def test_verdict_words():
    win = stats.superiority(DIFFS)
    assert stats.verdict(win, "superiority") == "win"
    assert stats.verdict(win, "superiority", p=0.2) == "inconclusive"  # e.g. after Holm
    loss = stats.superiority([-d for d in DIFFS])
    assert stats.verdict(loss, "superiority") == "loss"
    assert stats.verdict(stats.superiority([0.5, -0.4, 0.1]), "superiority") == "inconclusive"
    assert stats.verdict(stats.two_sided([-d for d in DIFFS]), "two_sided") == "loss"
    assert stats.verdict(stats.summarise([1.0]) | {"p": None}, "two_sided") == "n/a"


def test_degenerate_samples():
    same = stats.superiority([0.4, 0.4, 0.4])
    assert same["se"] == 0 and same["p"] == 0.0 and same["ci95"] == pytest.approx([0.4, 0.4])
    assert stats.two_sided([0.0, 0.0])["p"] == 1.0
    one = stats.superiority([0.3])
    assert one["n"] == 1 and one["p"] is None and one["ci95"] is None
    assert stats.summarise([])["diff"] is None
    assert math.isclose(stats.tost([0.1, 0.1], 0.5)["p"], 0.0)
