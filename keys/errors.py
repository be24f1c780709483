"""Errors that mean "the user's input is wrong": the command line prints them as one line and
exits 2. Declared in the lowest layer that raises them (the keyring), so every layer above can
raise and catch the same type. And the command line's exit codes."""


class UserError(Exception):
    """Bad input (missing file, not a capture, bad option, bad keyring). The message is one
    line and never holds key material."""


# The command line's exit codes, each declared once (README, "Exit codes").
EXIT_BAD_INPUT = 2     # UserError (KeyringError included): one line on stderr, nothing done
EXIT_INCOMPLETE = 3    # the capture was not read to its end (damaged file, a dissector that
                       # died): the output covers what was read and says where it stopped
