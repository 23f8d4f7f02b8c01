"""Adapters: MySQL repositories, the Redis cache, the outbox relay."""
