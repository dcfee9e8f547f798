"""Offline data tools: the flow-cache precompute (prepare), face tracks, and the synthetic dataset writers."""
