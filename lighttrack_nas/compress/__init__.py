"""Compression baselines: structured pruning of stand-alone trackers to a MACs/params budget.

``prune_model`` prunes a network of any family in place by its criterion (:data:`FAMILY_CRITERIA`:
``cnn``: torch-pruning channels, ``prune_to_budget``; ``vit``/``hybrid``: ViT-Slim masks or
torch-pruning heads, :mod:`.vit_prune`); ``sparsity_trainer`` is the criterion's sparsity training;
``prune_checkpoint`` is the whole run of ``tools/prune.py`` (sparsity training, pruning,
fine-tuning, ``prune.json``); ``compress_checkpoint`` is CompressTracker's layer compression of a ViT
tracker (``tools/compress.py``, :mod:`.compresstracker`).
"""
from .compresstracker import CompressSettings, compress_checkpoint
from .pipeline import (DEFAULT_CRITERION, FAMILY_CRITERIA, PruneSettings, check_model_budget, prune_checkpoint,
                       prune_model, sparsity_trainer)
from .prune import BUDGET_KINDS, CRITERIA, BudgetError, MinWidths, PruneResult, check_budget, measure, prune_to_budget
from .vit_prune import SCOPES, SlimTrainer, TransformerMinWidths, fold_gates, slim_to_budget, torch_prune_to_budget

__all__ = ["BUDGET_KINDS", "CRITERIA", "CompressSettings", "compress_checkpoint", "DEFAULT_CRITERION", "FAMILY_CRITERIA", "SCOPES", "BudgetError", "MinWidths",
           "PruneResult", "PruneSettings", "SlimTrainer", "TransformerMinWidths", "check_budget", "check_model_budget",
           "fold_gates", "measure", "prune_checkpoint", "prune_model", "prune_to_budget", "slim_to_budget",
           "sparsity_trainer", "torch_prune_to_budget"]
