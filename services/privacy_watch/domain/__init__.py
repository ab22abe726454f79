"""The watch's rules, free of Kafka, Faust and gRPC: a household's state and a log entry in,
the new state and the notices out."""
