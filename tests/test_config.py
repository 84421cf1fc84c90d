from pathlib import Path

import pytest
import yaml

from conftest import REPO, tiny_raw
from xdray.config import ExperimentConfig, config_from_dict, dump_config, load_experiment
from xdray.core.loader import apply_overrides, config_to_dict, parse_override
from xdray.core.errors import ConfigError

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


def test_there_are_shipped_experiments():
    names = {p.name for p in EXPERIMENTS}
    assert {"quickstart.yaml", "panx_local.yaml", "xtremedistil_wikiann.yaml"} <= names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_loads_and_opens_with_its_command(path: Path):
    cfg = load_experiment(path)
    assert isinstance(cfg, ExperimentConfig)
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == f"# xdray run experiments/{path.name}"
    assert cfg.name == path.stem


def test_defaults_fill_missing_sections(write_experiment):
    cfg = load_experiment(write_experiment({"name": "x"}))
    assert cfg.student.embedding_dim == 100 and cfg.data.max_length == 32
    assert [s.loss for s in cfg.distill.stages] == ["rep", "logit", "ce"]
    assert cfg.data.labels == ()  # read from the data
    assert cfg.teacher.finetune.epochs == 3.0


def test_a_finetuned_teacher_is_not_trained_further_by_default(write_experiment):
    raw = {"name": "x", "teacher": {"init": "finetuned", "model": "./ckpt"}}
    assert load_experiment(write_experiment(raw)).teacher.finetune.epochs == 0.0
    raw["teacher"]["finetune"] = {"epochs": 1}
    assert load_experiment(write_experiment(raw)).teacher.finetune.epochs == 1.0


@pytest.mark.parametrize("raw, fragment", [
    ({"name": "x", "studnet": {}}, "studnet: unknown key (did you mean 'student'?)"),
    ({"name": "x", "student": {"hiden_size": 3}}, "student.hiden_size: unknown key (did you mean 'student.hidden_size'?)"),
    ({"name": "x", "student": {"hidden_size": "big"}}, "student.hidden_size: expected an integer, got 'big'"),
    ({"name": "x", "student": {"hidden_size": True}}, "student.hidden_size: expected an integer"),
    ({"name": "x", "student": {"hidden_size": 0}}, "student.hidden_size: must be > 0"),
    ({"name": "x", "student": {"dropout": 1.5}}, "student.dropout: must be in [0, 1)"),
    ({"name": "x", "student": {"init": "xavier"}}, "student.init: expected 'svd' or 'pca' or 'random'"),
    ({"name": "x", "data": {"labels": ["B-PER", "O"]}}, "data.labels: must start with 'O'"),
    ({"name": "x", "data": {"labels": ["O", "B_PER"]}}, "data.labels: tag 'B_PER' is not IOB2"),
    ({"name": "x", "data": {"labelled": {"source": "iob"}}}, "data.labelled.path: source 'iob' needs train: and dev:"),
    ({"name": "x", "data": {"labelled": {"source": "conll", "train": "a", "dev": "b", "languages": ["en", "de"]}}},
     "data.labelled.languages: must name the one language of the split files"),
    ({"name": "x", "data": {"labelled": {"source": "synthetic", "train": "a"}}},
     "data.labelled.train: names a file, which source 'synthetic' does not read"),
    ({"name": "x", "data": {"labelled": {"source": "conll", "dev": "b", "languages": ["en"]}}},
     "data.labelled.train: is required when the splits are named one file each"),
    ({"name": "x", "data": {"labelled": {"source": "conll", "path": "d", "file_pattern": "{split}.txt"}}},
     "data.labelled.file_pattern: must contain {lang} when there is more than one language"),
    ({"name": "x", "data": {"labelled": {"source": "conll", "train": "a", "languages": ["en"], "scheme": "bio"}}},
     "data.labelled.scheme: expected"),
    ({"name": "x", "data": {"unlabelled": [{"source": "text"}]}}, "data.unlabelled[0].path: is required"),
    ({"name": "x", "data": {"unlabelled": [{"sorce": "text"}]}}, "data.unlabelled[0].sorce: unknown key"),
    ({"name": "x", "teacher": {"init": "pretrained"}}, "teacher.model: is required"),
    ({"name": "x", "teacher": {"build": {"hidden_size": 30, "num_heads": 4}}}, "teacher.build.hidden_size: must be divisible"),
    ({"name": "x", "distill": {"stages": []}}, "distill.stages: must list at least one stage"),
    ({"name": "x", "distill": {"stages": [{"loss": "ce"}]}}, "distill.stages[0].name: is required"),
    ({"name": "x", "transfer": {"actors": "many"}}, "transfer.actors: expected an integer or 'auto'"),
    ({"name": "bad name!"}, "name: must be a non-empty name"),
    ({"seed": 1}, "name: is required"),
])
def test_bad_configs_name_file_and_key(write_experiment, raw, fragment):
    path = write_experiment(raw)
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


@pytest.mark.parametrize("text, fragment", [
    ("", "file is empty"),
    ("name: [unclosed", "invalid YAML"),
    ("- a\n- b\n", "expected a mapping at the top level"),
])
def test_unusable_files(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_experiment(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_experiment(tmp_path / "nope.yaml")


def test_overrides_go_through_the_same_validation(write_experiment):
    path = write_experiment(tiny_raw())
    cfg = load_experiment(path, dict([parse_override("student.hidden_size=200"),
                                      parse_override("data.labelled.languages=[en, de]"),
                                      parse_override("runtime.address=null")]))
    assert cfg.student.hidden_size == 200
    assert cfg.data.labelled.languages == ("en", "de")
    assert cfg.runtime.address is None
    with pytest.raises(ConfigError, match="student.hidden_size: must be > 0"):
        load_experiment(path, {"student.hidden_size": -1})
    with pytest.raises(ConfigError, match="did you mean 'student.hidden_size'"):
        load_experiment(path, dict([parse_override("student.hidden_sise=3")]))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("student.hidden_size")


def test_apply_overrides_does_not_touch_the_original():
    raw = {"a": {"b": 1}}
    new = apply_overrides(raw, {"a.b": 2, "c.d": 3})
    assert raw == {"a": {"b": 1}} and new == {"a": {"b": 2}, "c": {"d": 3}}
    with pytest.raises(ConfigError, match="'b' is not a mapping"):
        apply_overrides(raw, {"a.b.c": 1})


def test_dump_and_reload_round_trip(write_experiment):
    cfg = load_experiment(write_experiment(tiny_raw()))
    again = config_from_dict(yaml.safe_load(dump_config(cfg)))
    assert again == cfg
    assert config_to_dict(again)["data"]["labelled"]["languages"] == ["en", "ru", "hi"]


def test_relative_paths_resolve_against_the_experiment_file(write_experiment, tmp_path):
    cfg = load_experiment(write_experiment(tiny_raw()))
    assert cfg.resolve_path("data/x") == (tmp_path / "data" / "x").resolve()
    assert cfg.resolve_path("/abs/x") == Path("/abs/x")


def test_storage_path_accepts_directories_and_file_uris(tmp_path):
    from xdray.core.rundir import run_directory

    raw = {"name": "exp", "runtime": {"storage_path": f"file://{tmp_path}/store"}}
    cfg = config_from_dict(raw)
    assert run_directory(cfg.name, cfg.runtime.storage_path, None) == tmp_path / "store" / "exp"
    raw["runtime"]["storage_path"] = str(tmp_path / "nfs")
    cfg = config_from_dict(raw)
    assert run_directory(cfg.name, cfg.runtime.storage_path, None) == tmp_path / "nfs" / "exp"
    raw["runtime"]["storage_path"] = "s3://bucket/runs"
    assert config_from_dict(raw).runtime.storage_path == "s3://bucket/runs"  # through pyarrow
    raw["runtime"]["storage_path"] = "ftp://host/runs"
    with pytest.raises(ConfigError, match="runtime.storage_path: ftp:// is not a storage xdray can use"):
        config_from_dict(raw)


@pytest.mark.parametrize("name", ["..", ".hidden", "../etc", "a/b", ""])
def test_experiment_names_cannot_leave_the_runs_directory(name):
    with pytest.raises(ConfigError, match="name: must be a non-empty name"):
        config_from_dict({"name": name})
