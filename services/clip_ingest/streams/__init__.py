"""Kafka consumers of clip_ingest: translate events and call the domain."""
