"""Typed schema of params.yaml.

Every key is declared in this package with its type and bounds. Loading fails before any work on an unknown
key or a bad value, with a one-line message that names the key's path, e.g.
``params.yaml: pretrain.adversarial.attack.eps: must be <= 1 (got 8.0)``.

Perturbation sizes are in pixel units of [0, 1] images and may be written as fractions
(``8/255``), which YAML would otherwise read as a string.

The package by concern: :mod:`~pipeline.config.sections` (each section's schema),
:mod:`~pipeline.config.catalog` (models, targets and analyses by name),
:mod:`~pipeline.config.checks` (references across sections), :mod:`~pipeline.config.params` (the
whole file) and :mod:`~pipeline.config.loading` (YAML to Params, one-line errors).
"""

from pipeline.attacks import AttackSpec
from pipeline.config.loading import ConfigError, load_params, parse_params, read_yaml, require_device
from pipeline.config.params import Params
from pipeline.config.sections import (AblationConfig, AugmentConfig, ChecksConfig, DataConfig, EvaluateConfig,
                                      FinetuneConfig, ModelConfig, TrainConfig, eps_text, set_path)
from pipeline.schema import parse_number

__all__ = ["AblationConfig", "AttackSpec", "AugmentConfig", "ChecksConfig", "ConfigError", "DataConfig",
           "EvaluateConfig", "FinetuneConfig", "ModelConfig", "Params", "TrainConfig", "eps_text", "load_params",
           "parse_number", "parse_params", "read_yaml", "require_device", "set_path"]
