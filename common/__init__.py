"""Shared plumbing: the event contract, messaging and observability used by every service."""
