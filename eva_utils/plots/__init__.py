"""The plots layer: every figure of the package, by family (training, gallery, cams, faithfulness, animation, budget).

Every function returns a ``matplotlib.figure.Figure`` (built without pyplot, so notebooks show it once and scripts
need no display); ``save_figure(fig, path)`` writes it. Images are shown in RGB, denormalised with the data set's own
mean and std. Every name is re-exported here.
"""

from eva_utils.plots.animation import cam_evolution_frames, save_animation, show_cam_evolution
from eva_utils.plots.budget import plot_budget_curve
from eva_utils.plots.cams import overlay, show_cams, show_exit_cams, show_layer_cams, size_label
from eva_utils.plots.faithfulness import plot_faithfulness
from eva_utils.plots.gallery import plot_confusion_matrix, show_misclassified, show_samples
from eva_utils.plots.save import save_figure
from eva_utils.plots.training import plot_history, plot_lr_finder, plot_lr_schedule

__all__ = [
    "overlay", "plot_budget_curve", "plot_confusion_matrix", "plot_faithfulness", "plot_history", "plot_lr_finder",
    "plot_lr_schedule", "cam_evolution_frames", "save_animation", "show_cam_evolution", "save_figure", "size_label", "show_cams",
    "show_exit_cams", "show_layer_cams", "show_misclassified", "show_samples",
]
