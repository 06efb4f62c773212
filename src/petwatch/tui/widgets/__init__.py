"""Widgets of the petwatch TUI, one module per screen area."""
