"""Training: the bidirectional teacher and the causal, memory-compressed student (no Ray import)."""
