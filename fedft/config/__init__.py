"""The run configuration: schema (`schema`) and loading (`loading`: TOML, `--set`).

The lowest layer above `fedft.errors`: it imports nothing else from fedft, so every
layer can take a `FedftConfig` or one of its sections. Rules that need data, models,
strategies or privacy accounting live with the jobs (`fedft.jobs.validate`).
"""

from fedft.config.loading import (
    apply_overrides,
    check_sections,
    parse_override,
    raw_config,
    read_config,
    read_toml,
    to_toml,
    validate,
)
from fedft.config.plugins import import_object, import_plugins, is_import_path, workers_import
from fedft.config.schema import (
    AttackConfig,
    AuditConfig,
    CheckpointConfig,
    ClientResources,
    CompareConfig,
    CompressionConfig,
    DataConfig,
    DevicesConfig,
    FaultsConfig,
    FedftConfig,
    FinetuneConfig,
    FinetuneMode,
    LoraConfig,
    ModelConfig,
    OutputConfig,
    PartitionConfig,
    PluginsConfig,
    PretrainConfig,
    PrivacyConfig,
    RoundPolicyConfig,
    SimulationConfig,
    StrategyConfig,
    TrainConfig,
    check_mode_syntax,
)

__all__ = [
    "AttackConfig", "AuditConfig", "CheckpointConfig", "ClientResources", "CompareConfig", "CompressionConfig", "DataConfig", "DevicesConfig", "FaultsConfig",
    "FedftConfig", "FinetuneConfig", "FinetuneMode", "LoraConfig", "ModelConfig", "OutputConfig", "PartitionConfig", "PluginsConfig", "PretrainConfig",
    "PrivacyConfig", "RoundPolicyConfig", "SimulationConfig", "StrategyConfig", "TrainConfig", "apply_overrides", "check_mode_syntax",
    "check_sections", "import_object", "import_plugins", "is_import_path", "parse_override", "raw_config", "read_config", "read_toml", "to_toml", "validate", "workers_import",
]
