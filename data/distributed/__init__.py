"""Clips across ranks: the per-epoch sharding plan, the Ray decode actors, and each rank's tf.data pipeline."""
