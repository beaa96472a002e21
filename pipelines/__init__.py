"""Pipelines: Ray wiring of the stages, one entry script per pipeline."""
