"""The two-stream video task: inputs, evaluation metrics and charts, TensorBoard samples, SavedModel export, and
the evidence pictures of `predict --explain`."""
