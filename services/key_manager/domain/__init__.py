"""The domain of key_manager: plain Python, no gRPC or Kafka imports."""
