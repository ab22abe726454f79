"""Cross-cutting wiring shared by every Privacam service, written once.

Settings, clock, errors, identity and mTLS, the authorization hook, gRPC
interceptors, Kafka helpers, telemetry and the service runtime live here;
no service-specific logic does.
"""
