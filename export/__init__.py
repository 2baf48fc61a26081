"""detrt.export"""
