"""Experiments: the framework (:mod:`.core`) and each module's registered experiments."""
from .core import *  # noqa: F401,F403
from .core import __all__  # noqa: F401

# Each module registers its experiments on import.
from . import foundation, inception, senet, nonlocal_, cbam  # noqa: E402,F401
