"""Adapters of device_auth to stores and other services."""
