"""Supernet training: LightTrack's loss, path samplers, schedule, the resumable trainer."""
from .loss import balanced_bce, iou_loss, tracking_loss
from .sampling import PathSampler, learning_rate
from .trainer import SubnetTrainer, SupernetTrainer, Trainer, TrainingError, experiment_space, load_experiment, plot_loss_curve

__all__ = ["PathSampler", "SubnetTrainer", "SupernetTrainer", "Trainer", "TrainingError", "balanced_bce", "experiment_space", "iou_loss",
           "learning_rate", "load_experiment", "plot_loss_curve", "tracking_loss"]
