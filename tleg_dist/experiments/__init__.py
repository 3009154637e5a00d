"""The experiment (configs/experiments/*.yaml): the paper's claims tested at CPU scale.

It is a plan like the demo and the sweep, with more to it, so it has a folder of its own above
plans/ (it imports plans; nothing below imports it): recipe.py (the typed recipe), plan.py (its
jobs, in two phases), budget.py (budgets in images), tuning.py (choices on the validation
split), stats.py and endpoints.py (the pre-registered comparisons), cost.py (images,
layer-passes, wall-clock), results.py and notes.py (experiment.json and its Markdown), and
pipeline.py (one launch: pre-register, tune, choose, report).

    python launchers/experiment.py --config configs/experiments/fmnist_v3.yaml [--smoke] [--cluster]
"""
