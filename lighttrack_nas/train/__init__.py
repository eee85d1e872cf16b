"""Training: LightTrack's loss, path samplers, schedule, the resumable trainers."""
from .loss import balanced_bce, iou_loss, tracking_loss
from .sampling import PathSampler, learning_rate
from .trainer import SubnetTrainer, SupernetTrainer, Trainer, TrainingError, plot_loss_curve

__all__ = ["PathSampler", "SubnetTrainer", "SupernetTrainer", "Trainer", "TrainingError", "balanced_bce",
           "iou_loss", "learning_rate", "plot_loss_curve", "tracking_loss"]
