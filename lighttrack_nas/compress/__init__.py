"""Compression baselines: structured pruning of stand-alone trackers to a MACs/params budget.

``prune_to_budget`` prunes a network in place (torch-pruning); ``prune_checkpoint`` is the whole run
of ``tools/prune.py`` (sparsity training, pruning, fine-tuning, ``prune.json``).
"""
from .pipeline import PruneSettings, prune_checkpoint
from .prune import BUDGET_KINDS, CRITERIA, BudgetError, MinWidths, PruneResult, check_budget, measure, prune_to_budget

__all__ = ["BUDGET_KINDS", "CRITERIA", "BudgetError", "MinWidths", "PruneResult", "PruneSettings", "check_budget",
           "measure", "prune_checkpoint", "prune_to_budget"]
