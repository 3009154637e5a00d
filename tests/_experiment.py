"""The experiment recipe the tests plan from, with every init and kind of upstream job in it.

configs/experiments/fmnist_v3.yaml was cut to fit one session (its header says why): no Pre-Fin,
truncated, Heur-LG or scratch_60u, tuning at one depth. The planner, tuning and report still
handle all of them, so the tests put them back with these overrides (the first v3 run's design).
"""

from __future__ import annotations

from _launch import ROOT

RECIPE = ROOT / "configs" / "experiments" / "fmnist_v3.yaml"

_FEWSHOT = "[tleg, heur_lg_paper, heur_lg, truncated, scratch_20u, scratch_60u]"
# Every init; these keys are not among the recipe's smoke overrides, so they also apply with --smoke.
EVERY_INIT = ["settings.same_task.runs.others.inits=[scratch_35u, scratch_150u, truncated, prefin]",
              f"settings.fewshot_fmnist.runs.all.inits={_FEWSHOT}",
              f"settings.fewshot_animal.runs.all.inits={_FEWSHOT}",
              "cost.timing.inits=[tleg, scratch_100u, scratch_150u]"]
# ... and the first run's depths (the smoke budget sets its own).
FULL_DESIGN = [*EVERY_INIT, "settings.same_task.depths=[2, 3, 4, 5, 6, 7, 8]",
               "settings.same_task.runs.others.depths=[2, 4, 6, 8]", "tuning.depths=[2, 8]"]
