"""Training: config schema, Horovod adapter, train/eval steps, the loop, checkpoints, metrics and export."""
