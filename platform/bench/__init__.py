"""Benchmarks (`segloop bench ...`): each prints a table and saves JSON."""
