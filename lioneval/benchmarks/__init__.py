"""Benchmarks: one module each, opening with what it implements (paper, dataset, version)."""
