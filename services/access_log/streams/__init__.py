"""Kafka consumers of access_log: translate events and call the domain."""
