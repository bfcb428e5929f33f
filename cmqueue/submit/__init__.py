"""Submitting: job specs, placement, placeholders, reduce specs, publishing to the queue."""
