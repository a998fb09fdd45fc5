"""Experiments of module danet (registered on import)."""
