"""Graded exercises: ``check(key, learner)`` gives instant feedback; see :mod:`.core`."""
