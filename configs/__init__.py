"""Configs shipped with the package (the demo runs from a plain install)."""
