"""The generic training engine: the task interface, the loop, steps, optimizer, checkpoints and run records."""
