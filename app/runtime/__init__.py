"""The worker loop and running one claimed run: lease, timeout, body, outcome."""
