"""The domain of retention: plain Python, no gRPC or Kafka imports."""
