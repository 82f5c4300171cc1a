"""Edges: each translates one party's wire format to the core and back."""
