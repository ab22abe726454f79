"""Kafka consumers of key_manager: translate events and call the domain."""
