"""Pictures for the notebooks, one file per task kind; every public name is importable from here.

==================  ======================================================================================
``core.py``         image grids, training curves, attention overlays, result bars and tables, cost plots
``segmentation.py`` image | truth | prediction panels, PAM and CAM attention (module 06)
``reid.py``         tracklets, STA attention, rankings, mAP / rank-1 tables (module 08)
``capstone.py``     every block's Δ accuracy against its cost, with the Pareto front (module 09)
==================  ======================================================================================

Every function returns a matplotlib ``Figure`` (Jupyter shows it; call ``plt.close(fig)`` in scripts) or an
HTML table. A new task kind adds one file here and re-exports its names below.
"""
from .core import (overlay_attention, plot_channel_weights, plot_cost, plot_history, plot_recorded_curves,
                   plot_results, results_table, show_images, table)
from .segmentation import label_colors, show_channel_affinity, show_pam_attention, show_segmentation
from .reid import plot_ranking, plot_sta_attention, reid_results_table, reid_summary, show_tracklets
from .capstone import plot_pareto

__all__ = ["overlay_attention", "plot_channel_weights", "plot_cost", "plot_history", "plot_recorded_curves", "plot_results",
           "results_table", "show_images", "table",
           "label_colors", "show_channel_affinity", "show_pam_attention", "show_segmentation",
           "plot_ranking", "plot_sta_attention", "reid_results_table", "reid_summary", "show_tracklets",
           "plot_pareto"]
