"""tleg-dist: distributed training for TLEG (Transformer as Linear Expansion of Learngene)."""

__version__ = "0.1.0"
