"""The watch's ties to the outside: the Faust worker, its Kafka login, its metrics."""
