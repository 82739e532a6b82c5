"""Experiments built on hamgan, kept outside the installed package (run them from the repository root)."""
