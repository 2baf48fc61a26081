"""Checkpoints in, `Detector` out: safe reading, configuration inferred from the weights, strict
loading, and conversion of HuggingFace models."""
