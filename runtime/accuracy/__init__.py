"""Accuracy proofs: detection agreement, the comparison policy, polygraphy comparisons and their report."""
