"""Evaluation on held-out stand-in scenes: action scripts, ground-truth renders, metrics, grids."""
