"""Adapters of access_log to stores and other services."""
