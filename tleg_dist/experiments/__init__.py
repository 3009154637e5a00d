"""The paper's claims as one repeatable experiment: teacher -> learngene -> Des-Nets of several
depths, each initialised four ways (TLEG, scratch, scratch with TLEG's total budget, truncated
pre-trained), in a same-task and a transfer setting, over several seeds.

    python launchers/experiment.py --config configs/experiments/fmnist.yaml [--smoke]

config.py (the recipe), budget.py (images, steps and TLEG's cost share), plan.py (every stage
run as a RunConfig), runner.py (runs them, resumably), summary.py (mean/std, verdicts),
plots.py and report.py (tables, PNGs, the Results section).
"""
