"""Search strategies over any SearchSpace (evolution as published, random search), search settings,
budgets and Pareto fronts. The driver is ``lighttrack_nas.search.runner`` (imports torch)."""
from .evolution import STRATEGIES, Evolution, EvolutionConfig, RandomSearch, Search
from .pareto import pareto_front
from .settings import Budgets, SearchSettings

__all__ = ["STRATEGIES", "Budgets", "Evolution", "EvolutionConfig", "RandomSearch", "Search", "SearchSettings",
           "pareto_front"]
