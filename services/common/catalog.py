"""The platform's service processes: each has its own identity and certificate, its own
Kafka, Redis and MinIO users, and its own grants (services.common.topic_grants)."""

SERVICES = (
    "device_auth",
    "key_manager",
    "clip_ingest",
    "relay_broker",
    "retention",
    "access_log",
    "privacy_watch",
)
