"""Schedules: a cron expression that fires a normal batch (a command, as `cmq submit`
sends it) or a workflow (as `cmq run` starts it).

The schedules live in the history store. The recorder fires them (``runner``): it
computes the next due time and waits on it, or on a note on the broker that a schedule
changed. Each firing is claimed in the store by compare-and-set on the schedule's
``checked`` time, so a due time fires once even when two recorders race. A schedule that
was missed while nothing ran fires once on restart (``catchup: once``), never in a burst.

- ``cron``: the 5-field expression, parsed into celery's ``crontab``; due times.
- ``model``: a schedule's fields, checked; the decision what is due at a given time.
- ``fire``: one firing (through the submit path or ``Workflows.start``) and one check.
- ``runner``: the recorder's loop.
- ``views``: the rows of `cmq schedule list`.
"""
