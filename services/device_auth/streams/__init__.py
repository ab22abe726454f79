"""Kafka consumers of device_auth: translate events and call the domain."""
