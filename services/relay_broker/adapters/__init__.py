"""Adapters of relay_broker to stores and other services."""
