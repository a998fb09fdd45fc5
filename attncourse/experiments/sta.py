"""Experiments of module sta (registered on import)."""
