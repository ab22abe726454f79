"""relay_broker: relay brokering: live view peer-to-peer and end-to-end encrypted, coturn as
fallback.

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "relay_broker"
