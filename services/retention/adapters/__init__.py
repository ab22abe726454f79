"""Adapters of retention to stores and other services."""
