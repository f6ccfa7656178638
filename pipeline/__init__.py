"""Batch normalization in adversarial training: a reproducible research pipeline (library)."""
