"""The domain of relay_broker: plain Python, no gRPC or Kafka imports."""
