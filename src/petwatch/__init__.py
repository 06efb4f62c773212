"""petwatch: find every photo of your pet from one example, and turn them into comics."""

__version__ = "0.1.0"
