"""Benchmarks: each prints its figure and the ratio to a baseline measured in the same run."""
