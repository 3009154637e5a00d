"""Plans: the demo, the depth sweep and the experiment as jobs, run by one scheduler on one of three
executors. The experiment adds its budgets in images (budget.py) and its statistics (experiment_summary.py).

    job.py  run.py  executors.py  launch.py  report.py      what every plan shares
    demo.py  sweep.py  experiment.py                         the plans
"""
