"""meterbench.vision"""
