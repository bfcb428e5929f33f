"""Facts about machines: gathered as jobs pinned to each machine, parsed, stored in the
history with their time, and used to choose machines (``cmq submit --where``)."""
