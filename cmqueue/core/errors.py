"""Every error cmq raises on purpose, under one base class.

Each subclass carries the exit code the command line uses for it and the HTTP status
`cmq serve` answers with, so the mapping from errors to exit codes and statuses lives
here and nowhere else (see ``cmqueue.cli.main`` and ``cmqueue.serve.app``).
"""

from __future__ import annotations


class CmqError(Exception):
    """Base of every error cmq raises on purpose; printed as one line, no traceback."""

    exit_code = 1
    http_status = 409                  #: a refusal: what was asked cannot be done now


class UsageError(CmqError):
    """The command line is wrong: unknown option, bad value, missing argument."""

    exit_code = 2
    http_status = 400


class ConfigError(CmqError):
    """The inventory or a setting is invalid; the message names the file and the field."""

    exit_code = 2
    http_status = 400


class InsecureFileError(ConfigError):
    """A file that holds secrets is readable by group or others (as ssh refuses keys)."""


class UnknownMachineError(UsageError):
    """A machine or label named on the command line is not in the inventory."""

    http_status = 404


class UnknownJobError(UsageError):
    """A job id (or prefix) matches no job in the history, or more than one."""

    http_status = 404


class MissingError(CmqError):
    """Something the command names does not exist: a local file, a file on a storage
    service, a name in the virtual directory. The same kind of error, the same exit
    code, whichever command names it."""

    exit_code = 2
    http_status = 404


class ServiceError(CmqError):
    """A service cmq needs (the broker, a worker, the history store) is not reachable."""

    exit_code = 3
    http_status = 503


class JobFailedError(CmqError):
    """One or more jobs that were waited on ended in a state other than succeeded."""

    exit_code = 1

    def __init__(self, message: str, records: list | None = None) -> None:
        super().__init__(message)
        self.records = records or []


class MachineUnreachableError(CmqError):
    """The ssh client could not reach the machine (exit 255 and the probe failed)."""

    exit_code = 1


class VagrantError(CmqError):
    """Vagrant could not bring VMs up, halt or destroy them; the message gives its reason
    and which VMs are running."""

    exit_code = 1
