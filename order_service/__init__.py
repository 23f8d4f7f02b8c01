"""The order service: accepts orders, owns order_db, publishes order events via its outbox."""
