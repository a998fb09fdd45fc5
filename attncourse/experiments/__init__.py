"""Experiments: the framework (:mod:`.core`), running them (:mod:`.runner`), recorded results and
checkpoints (:mod:`.recorded`), and each module's registered experiments."""
from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .recorded import *  # noqa: F401,F403
from .recorded import __all__ as _recorded_all
from .runner import *  # noqa: F401,F403
from .runner import __all__ as _runner_all

__all__ = [*_core_all, *_recorded_all, *_runner_all]

# Each module registers its experiments on import.
from . import foundation, inception, senet, nonlocal_, cbam, danet, branch, sta  # noqa: E402,F401
