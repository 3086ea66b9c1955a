"""The synthetic transition generator lives in the package (the bench uses it too)."""

from sitewatch.sink.synthetic import as_messages, transitions

__all__ = ["as_messages", "transitions"]
