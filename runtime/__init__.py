"""detrt.runtime"""
