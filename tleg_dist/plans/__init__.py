"""Plans: runs of many jobs, one way, run by one scheduler on one of three executors. The demo
and the depth sweep are plans; the experiment builds its own on top (tleg_dist/experiments/).

    job.py  run.py  executors.py  launch.py  report.py      what every plan shares
    demo.py  sweep.py                                        the plans
"""
