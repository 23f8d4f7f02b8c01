"""Concrete adapters of the analytics service: MySQL tables, one module per port (fact_store,
reader, rebuilder), Redis summary cache."""
