"""Concrete adapters of the analytics service: MySQL tables and store, Redis summary cache."""
