"""clip_ingest: clip ingestion and playback: opt-in alert clips, at most 6 s, each encrypted,
stored in MinIO.

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "clip_ingest"
