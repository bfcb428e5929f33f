"""``python -m cmqueue`` runs cmq's commands in this process; the installed ``cmq`` command
runs the same ones, through the launcher when `cmq up` started one (see :mod:`cmqueue.cli.client`)."""

from .cli.main import main

raise SystemExit(main())
