"""The one exception type users see: its message says what happened and what to do next."""


class PetwatchError(Exception):
    """An error the user can act on; the CLI prints it as one line, the TUI as a notification."""
