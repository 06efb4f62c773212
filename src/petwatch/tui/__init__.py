"""The terminal UI: ``petwatch tui`` (or ``petwatch`` with no command).

Layout (as in darrenburns/posting): ``app.py`` holds the app, its connection to the daemon and
the app-wide state; ``screens/`` one module per screen; ``widgets/`` the pieces of a screen,
grouped by the area they fill; ``petwatch.tcss`` the one stylesheet (theme variables only, so it
reads well on dark and light themes). The TUI talks to the daemon only through
``petwatch.client``: it never imports torch, Milvus or the daemon's modules, so it starts fast.

Hooks for other features:

* ``app.selection`` - the ordered list of selected photo paths (it survives new searches);
  ``app.selection_changed()`` must be called after changing it from outside.
* the ``comic`` action (key ``k``, command palette "Comic: ...") opens
  ``petwatch.tui.screens.comic.ComicScreen(paths)`` when that module exists.
"""
