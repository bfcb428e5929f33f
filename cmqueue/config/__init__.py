"""The inventory and the settings: one resolution of every value."""
