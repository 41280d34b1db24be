"""Benchmarks of cronlock's hot path; run them with ``python -m benchmarks.run``."""
