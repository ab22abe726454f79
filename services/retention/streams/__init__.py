"""Kafka consumers of retention: translate events and call the domain."""
