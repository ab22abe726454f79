"""retention: retention and privacy rights: 7-day deletion, crypto-shredding, account
cancellation, data export.

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "retention"
