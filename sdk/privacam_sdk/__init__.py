"""Privacam client SDK: talk to the platform as a camera, an app or an operator.

profile = Profile.load("owner")
async with PrivacamClient(profile) as client:
    print(await client.health("clip_ingest"))
"""

from privacam_sdk.client import PrivacamClient
from privacam_sdk.profile import Profile

__all__ = ["PrivacamClient", "Profile"]
