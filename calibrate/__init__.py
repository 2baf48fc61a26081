"""detrt.calibrate"""
