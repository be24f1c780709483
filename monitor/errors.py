"""Errors that mean "the user's input is wrong": the CLI prints them as one line, exit 2."""


class UserError(Exception):
    """Bad input (missing file, not a capture, bad option). The message is one line."""
