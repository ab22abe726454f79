"""The domain of clip_ingest: plain Python, no gRPC or Kafka imports."""
