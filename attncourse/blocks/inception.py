"""(family file — filled in by its module issue)."""
