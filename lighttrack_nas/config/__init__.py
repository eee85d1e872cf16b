"""Configs as data, at the bottom of the package: YAML loading with one inheritance keyword
(``extends:``), deep merging, one field validator (:class:`Field`, :func:`check_section`) for every
section, the named errors, and the experiment schema and loader every stage uses."""
from .base import (ConfigError, Field, StopError, UnknownNameError, check_keys, check_section, config_differences,
                   deep_merge, load_yaml)
from .experiment import (DEFAULT_TRAIN, OPTIMIZERS, RESUME_FREE, TOP_KEYS, check_data_config, check_train,
                         data_read, load_experiment)

__all__ = ["DEFAULT_TRAIN", "OPTIMIZERS", "RESUME_FREE", "TOP_KEYS", "ConfigError", "Field", "StopError",
           "UnknownNameError", "check_data_config", "check_keys", "check_section", "check_train",
           "config_differences", "data_read", "deep_merge", "load_experiment", "load_yaml"]
