"""Plans: the demo, the depth sweep and the experiment as jobs, run by one scheduler on one of three executors."""
