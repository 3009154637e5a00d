"""The experiment's analysis: what its records say about the paper's claims. The experiment
itself is a plan (tleg_dist/plans/experiment.py), run like every other plan.

    python launchers/experiment.py --config configs/experiments/fmnist.yaml [--smoke] [--cluster]

budget.py (images, steps and TLEG's cost share), summary.py (mean/std, verdicts), claims.py,
plots.py and report.py (tables, PNGs, the Results section).
"""
