"""detrt.plugins"""
