"""Benchmarks that regenerate the numbers in docs/ (``python -m benchmarks``)."""
