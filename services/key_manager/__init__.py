"""key_manager: key management: envelope encryption, per-period tenant keys, rotation, crypto-
shredding.

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "key_manager"
