"""Adapters: one per outside service, each implementing a core port and turning that service's errors into the
core's exceptions."""
