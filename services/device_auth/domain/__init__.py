"""The domain of device_auth: plain Python, no gRPC or Kafka imports."""
