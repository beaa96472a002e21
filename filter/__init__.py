"""Filter: per-frame pose and image checks, clean segments, and the annotators' review report."""
