"""Benchmarks: each module measures the project against a plain-library reference in the same run."""
