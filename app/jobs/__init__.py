"""The jobs cronlock ships, one per module; `instrumentation.py` decides which run."""
