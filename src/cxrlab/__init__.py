"""cxrlab: trustworthy COVID-19 chest X-ray experiments from messy public sources."""

__version__ = "0.1.0"
