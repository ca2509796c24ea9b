"""meterbench: camera-based reading and verification of water meters and measuring tanks."""

__version__ = "0.1.0"
