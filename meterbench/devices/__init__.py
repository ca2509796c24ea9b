"""meterbench.devices"""
