"""detrt.detectors"""
