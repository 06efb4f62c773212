"""The one exception type users see: its message says what happened and what to do next; and
the index's refusals, which callers tell apart from other errors (nothing was written)."""


class PetwatchError(Exception):
    """An error the user can act on; the CLI prints it as one line, the TUI as a notification."""


class StoreRefused(PetwatchError):
    """The index took no write, for a reason that clears by itself (room freed, server back):
    the rest of the walk waits, and the daemon walks again once ``write_problem`` clears."""


class StoreFull(StoreRefused):
    """The local index's disk is (nearly) full or read-only: nothing was written."""


class StoreUnavailable(StoreRefused):
    """The Milvus server does not answer: nothing was written."""
