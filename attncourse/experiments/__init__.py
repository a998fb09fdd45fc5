"""Experiments: the framework (:mod:`.core`), running them (:mod:`.runner`), recorded results and
checkpoints (:mod:`.recorded`), what each module found (:mod:`.summaries`), and each module's registered experiments."""
from .core import *  # noqa: F401,F403
from .core import __all__ as _core_all
from .recorded import *  # noqa: F401,F403
from .recorded import __all__ as _recorded_all
from .runner import *  # noqa: F401,F403
from .runner import __all__ as _runner_all
from .shift import *  # noqa: F401,F403
from .shift import __all__ as _shift_all
from .summaries import *  # noqa: F401,F403
from .summaries import __all__ as _summaries_all

__all__ = [*_core_all, *_recorded_all, *_runner_all, *_shift_all, *_summaries_all,
           "CAPSTONE_ARMS", "CAPSTONE_COLUMNS", "CAPSTONE_COSTS", "capstone_cells", "capstone_step_ms", "capstone_table", "pareto_front", "pareto_sentence"]

# Each module registers its experiments (and shift evaluations) on import.
from . import foundation, inception, senet, beyond_average, nonlocal_, cbam, danet, branch, sta, position_fusion, capstone  # noqa: E402,F401
from .capstone import CAPSTONE_ARMS, CAPSTONE_COLUMNS, CAPSTONE_COSTS, capstone_cells, capstone_step_ms, capstone_table, pareto_front, pareto_sentence  # noqa: E402
