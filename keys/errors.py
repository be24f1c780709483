"""Errors that mean "the user's input is wrong": the command line prints them as one line and
exits 2. Declared in the lowest layer that raises them (the keyring), so every layer above can
raise and catch the same type."""


class UserError(Exception):
    """Bad input (missing file, not a capture, bad option, bad keyring). The message is one
    line and never holds key material."""
