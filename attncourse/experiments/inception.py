"""(experiments of this module — filled in by its module issue)."""
