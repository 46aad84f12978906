"""Whole comparisons from one spec file: grid runner (runner.py), spec (spec.py), report."""
