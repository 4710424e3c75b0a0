"""The few named exception types users can cause; the CLI prints them as one line, exit != 0."""

from __future__ import annotations


class MifgError(Exception):
    """Base of every error a user can cause (bad path, bad config, bad endpoint...)."""

    exit_code = 2


class InputError(MifgError):
    """A file or directory given by the user is missing, unreadable or malformed."""


class ConfigError(MifgError, ValueError):
    """A flag, config file or combination of options is invalid."""


class EndpointError(MifgError):
    """The model endpoint is unreachable, refuses the key, or lacks the model."""


class DiskFullError(MifgError):
    """A write ran out of space (ENOSPC, SQLite's "database or disk is full"); what was kept is named."""

    exit_code = 1  # the command stopped part way, like a run stopped on failures


class BudgetSpent(MifgError):
    """The run's token or cost budget is spent: the run stops cleanly and the same command resumes it."""

    exit_code = 3
