"""Messaging plumbing shared by every service: topology, publishing, the consumer runner."""
