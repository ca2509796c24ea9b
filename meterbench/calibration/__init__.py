"""meterbench.calibration"""
