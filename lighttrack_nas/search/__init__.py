"""Search strategies over any SearchSpace (evolution as published, random search)."""
from .evolution import STRATEGIES, Evolution, EvolutionConfig, RandomSearch, Search

__all__ = ["STRATEGIES", "Evolution", "EvolutionConfig", "RandomSearch", "Search"]
