"""Analytics service: applies order events exactly once to its own database and serves totals."""
