"""Adapters of clip_ingest to stores and other services."""
