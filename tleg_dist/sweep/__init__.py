"""Depth sweeps: one learngene, many Des-Nets, as submitit jobs (local or a Slurm array)."""
