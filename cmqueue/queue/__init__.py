"""The queue on Redis: the Celery app and tasks, queue names, claims, leases, orphans, rescue, the event stream."""
