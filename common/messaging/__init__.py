"""Messaging plumbing shared by every service: topology, confirmed publishing, the consumer runner."""
