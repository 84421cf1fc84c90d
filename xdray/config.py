"""The experiment: one YAML file composed of each stage's config section.

`load_experiment` reads the file with `yaml.safe_load`, applies dotted overrides
(`student.hidden_size=200`; the CLI's `--set` and Tune trial overrides go through the same path),
and builds `ExperimentConfig` with `xdray.core.loader`. Every error is a `ConfigError` naming the
file and the dotted key. The sections' schemas live beside their stages (`xdray/<stage>/schema.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import yaml

from xdray.core.errors import ConfigError
from xdray.core.files import resolve_path
from xdray.core.loader import apply_overrides, build_checked, config_to_dict, read_yaml, require
from xdray.core.runtime import RuntimeConfig
from xdray.data.schema import DataConfig
from xdray.distill.schema import DistillConfig, SearchConfig, StudentConfig
from xdray.distill.space import SearchSpace, load_space
from xdray.frontier.schema import EvalConfig, ReportConfig
from xdray.teacher.schema import TeacherConfig
from xdray.transfer.schema import TransferConfig


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # Directory of the experiment file; relative paths in the config resolve against it.
    base_dir: str = "."

    def __post_init__(self) -> None:
        require(bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name) and not self.name.startswith("."),
                "name", f"must be a non-empty name of letters, digits, '-', '_' or '.' that does not start with "
                f"'.' (it names the run directory), got {self.name!r}")

    def resolve_path(self, path: str) -> Path:
        """A path from the config: absolute as given, relative to the experiment file otherwise."""
        return resolve_path(self.base_dir, path)


def config_from_dict(raw: Mapping[str, Any], source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Build an ExperimentConfig from a raw mapping; errors name `source` and the dotted key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    values = dict(raw)
    values.setdefault("base_dir", base_dir)
    return build_checked(ExperimentConfig, values, source)


def load_experiment(path: str | Path, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Load an experiment YAML file and apply dotted overrides."""
    path = Path(path)
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: file is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if "base_dir" in raw:
        raise ConfigError(f"{path}: base_dir: is set by xdray (the experiment file's directory)")
    source = str(path)
    if overrides:
        raw = apply_overrides(raw, overrides)
        source = f"{path} (with overrides {', '.join(overrides)})"
    return config_from_dict(raw, source, str(path.resolve().parent))


def with_labels(cfg: ExperimentConfig, labels: tuple[str, ...]) -> ExperimentConfig:
    """The experiment with its label list resolved (read from the data or the teacher where
    data.labels was left empty): what the run saves, and what fingerprints and trial keys hash,
    so a run's keys do not depend on whether its labels were written out."""
    return replace(cfg, data=replace(cfg.data, labels=tuple(labels)))


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def check_override(raw: Mapping[str, Any], key: str, value: Any, where: str) -> None:
    """Raise ConfigError unless setting `key` to `value` in the experiment `raw` gives a valid
    config: a search-space value gets exactly the validation a `--set` override gets."""
    try:
        config_from_dict(apply_overrides(dict(raw), {key: value}), where)
    except ConfigError as err:
        detail = str(err).removeprefix(f"{where}: ").removeprefix(f"{key}: ")
        raise ConfigError(f"{where}: {key}: value {value!r} is not valid for the experiment: {detail}") from None


def load_search_space(path: str | Path, raw_config: Mapping[str, Any]) -> SearchSpace:
    """A search-space file, every value it can produce checked against the experiment
    (`raw_config`: the experiment's mapping) as a `--set` override would be."""
    return load_space(path, partial(check_override, raw_config))


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a run saved (RUN/config.yaml), for commands that take a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a run directory (made by `xdray run`)?")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(raw, str(path))
