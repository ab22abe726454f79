"""access_log: the per-tenant tamper-evident log of every access to a household's data,
operator access requests and incidents (issue #8).

See README.md in this folder for its RPCs, topics and settings.
"""

NAME = "access_log"
