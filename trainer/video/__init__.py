"""The two-stream video task: inputs, evaluation metrics and charts, TensorBoard samples, and SavedModel export."""
