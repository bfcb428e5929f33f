"""``python -m cmqueue`` is ``cmq``."""

from .cli.main import main

raise SystemExit(main())
