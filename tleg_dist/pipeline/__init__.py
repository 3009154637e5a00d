"""Multi-stage pipelines: teacher -> learngene -> Des-Nets, with results tables and plots."""
