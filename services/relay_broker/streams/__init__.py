"""Kafka consumers of relay_broker: translate events and call the domain."""
