"""Adapters of key_manager to stores and other services."""
