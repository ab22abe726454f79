"""gRPC adapters: translate messages and call the domain; no logic of their own."""
