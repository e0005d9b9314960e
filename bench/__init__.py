"""Benchmarks (not tests): each compares Loom with the raw library in the same run."""
