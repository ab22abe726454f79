"""The access topic, as the watch consumes it."""
