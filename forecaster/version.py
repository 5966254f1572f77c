"""The package version (the base layer: imported by __init__ and by whatever records it in outputs)."""
__version__ = "0.1.0"
