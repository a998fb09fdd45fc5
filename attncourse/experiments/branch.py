"""Experiments of module branch (registered on import)."""
