"""Datasets: WebDataset shard writing, the manifest, and a streaming loader into torch (no Ray import)."""
