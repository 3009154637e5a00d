"""DeepSpeed training: engine set-up, the loop, checkpoints, metrics."""
