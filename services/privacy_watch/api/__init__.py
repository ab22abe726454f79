"""No API of its own yet: the watch's notices go to the notices topic, from which the relay
broker's notice stream is to deliver them to the household's apps (see the README). The
runtime still serves health (NOT_SERVING until the tables are recovered), diagnostics and
metrics."""
