"""The experiment's budgets (budget.py: images, steps, TLEG's cost share) and statistics
(summary.py: cells, verdicts, cost ratios, summary.json). The experiment itself is a plan
(tleg_dist/plans/experiment.py), reported like every other plan (tleg_dist/plans/report.py).

    python launchers/experiment.py --config configs/experiments/fmnist_v2.yaml [--smoke] [--cluster]
"""
