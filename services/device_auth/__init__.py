"""device_auth: device identity: accounts, certificates per camera and app, enrollment,
revocation, PIN, sharing, camera settings.

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "device_auth"
