"""Search-space API: labelled choices, architectures, sampling, mutation, crossover, constraints."""
from .formats import get_format, register_format
from .space import (Architecture, Choice, Constraint, ConstraintError, SearchSpace, SpaceError, as_rng,
                    experiment_space, minimize, token)

__all__ = ["Architecture", "Choice", "Constraint", "ConstraintError", "SearchSpace", "SpaceError", "as_rng",
           "experiment_space", "get_format", "minimize", "register_format", "token"]
