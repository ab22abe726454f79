"""The domain of access_log: plain Python, no gRPC or Kafka imports."""
