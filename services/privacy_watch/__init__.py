"""privacy_watch: tells a household within seconds of unusual access to its data (issue #22)."""

NAME = "privacy_watch"
