"""Screens of the petwatch TUI: search (the main one), preview, folders, failures, selection,
browse, help."""
