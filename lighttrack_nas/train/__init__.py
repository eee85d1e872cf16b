"""Training: LightTrack's loss, path samplers, schedule, the resumable trainers, subnet retraining."""
from .loss import balanced_bce, iou_loss, tracking_loss
from .retrain import architecture_argument, evaluate_subnet, retrain
from .sampling import PathSampler, learning_rate
from .trainer import SubnetTrainer, SupernetTrainer, Trainer, TrainingError, plot_loss_curve

__all__ = ["PathSampler", "SubnetTrainer", "SupernetTrainer", "Trainer", "TrainingError", "architecture_argument",
           "balanced_bce", "evaluate_subnet", "iou_loss", "learning_rate", "plot_loss_curve", "retrain", "tracking_loss"]
