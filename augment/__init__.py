"""Augment: clip transforms such as palindrome augmentation (conventions.md section 4)."""
