"""meterbench.models"""
