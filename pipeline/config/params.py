"""The whole params file as one model: its top-level keys, validated section by section, then
across sections (:mod:`pipeline.config.checks`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.config import checks
from pipeline.config.catalog import Catalog
from pipeline.config.sections import (AblationConfig, AnalysisPlan, AnalyzeBNConfig, DataConfig, EvaluateConfig,
                                      EvaluationPlan, FinetuneGroup, InterpolateConfig, LedgerConfig, ModelConfig,
                                      PretrainGroup, ShapingEvalConfig, StrengthAnalysisConfig, TrackingConfig,
                                      TrainConfig)
from pipeline.schema import PositiveInt, Section


class Params(Catalog, Section):
    """A whole params file: its sections, the catalog over them, and checks across them.
    ``analysis_items`` and the other look-ups are :class:`~pipeline.config.catalog.Catalog`'s."""

    seed: Annotated[int, Field(ge=0)] = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch's CPU threads in each item's process: part of every result (a float sum splits by thread)
    threads: PositiveInt = 1
    # items of a stage run side by side: auto is one process a CPU core (one at a time on CUDA)
    workers: Literal["auto"] | PositiveInt = "auto"
    # a training whose loss turns NaN or Inf: `report` writes its folder as diverged (diverged.json,
    # no model) and its group goes on, `fail` stops the group. Read by the training stages, which
    # list it as a DVC param: what they write for a diverged model depends on it.
    on_divergence: Literal["report", "fail"] = "report"
    data: DataConfig
    model: ModelConfig  # the default architecture of pretrain entries
    # Shared training settings: entries inherit them with YAML's merge key (``<<: *train``), so
    # DVC sees each entry's effective settings and reruns exactly the entries a change reaches.
    train_defaults: dict[str, Any] | None = None
    pretrain: Annotated[dict[str, PretrainGroup], Field(min_length=1)]
    finetune: dict[str, FinetuneGroup] = {}
    evaluations: Annotated[dict[str, EvaluationPlan], Field(min_length=1)]  # the report is over these
    analyses: dict[str, AnalysisPlan] = {}
    interpolate: InterpolateConfig | None = None
    analyze_bn: AnalyzeBNConfig | None = None
    ablations: dict[str, AblationConfig] = {}
    strength_analysis: StrengthAnalysisConfig | None = None
    shaping_eval: ShapingEvalConfig | None = None
    evaluate: EvaluateConfig
    tracking: TrackingConfig = TrackingConfig()
    ledger: LedgerConfig | None = None

    @field_validator("data")
    @classmethod
    def _data_where_the_stages_read_it(cls, data: DataConfig) -> DataConfig:
        """dvc.yaml's fetch stage writes, and every stage reads, data/prepared: with another root
        the dataset would go where DVC does not track it and no stage looks."""
        from pipeline.layout import DATA

        if Path(data.root) != Path(DATA):
            raise ValueError(f"root: {data.root!r}, but dvc.yaml's stages write and read {DATA}/prepared; keep "
                             f"root: {DATA} (to download elsewhere, make {DATA}/raw a link to that folder)")
        return data

    @field_validator("train_defaults")
    @classmethod
    def _defaults_are_train_settings(cls, value: dict | None) -> dict | None:
        if value:  # each key must be a valid training setting on its own
            TrainConfig.model_validate({"method": "standard", "epochs": 0, **value})
        return value

    @model_validator(mode="after")
    def _references_resolve(self) -> Params:
        checks.references(self)
        return self
