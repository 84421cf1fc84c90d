"""Search-space files: parsing, validation against the experiment, Tune domains, schedulers."""

import re

import pytest
import yaml

from conftest import REPO
from xdray.config import load_search_space as load_space
from xdray.core.errors import ConfigError
from xdray.core.loader import apply_overrides, parse_override, read_yaml
from xdray.distill.tuning import tune_param_space

QUICK = read_yaml(REPO / "experiments" / "quickstart.yaml")


def write(tmp_path, text):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_paper_grid_parses_and_maps_to_tune_domains():
    space = load_space(REPO / "experiments" / "spaces" / "paper_grid.yaml",
                       read_yaml(REPO / "experiments" / "xtremedistil_wikiann.yaml"))
    assert [(e.key, e.values) for e in space.entries] == [("student.embedding_dim", (50, 100, 200, 300)),
                                                          ("student.hidden_size", (100, 200, 400, 600))]
    assert space.scheduler is None
    space = tune_param_space(space.entries)
    assert space["student.embedding_dim"] == {"grid_search": [50, 100, 200, 300]}


def test_every_domain(tmp_path):
    path = write(tmp_path, yaml.safe_dump({
        "student.init": {"choice": ["svd", "random"]},
        "student.dropout": {"uniform": [0.1, 0.4]},
        "distill.heldout_fraction": {"loguniform": [0.01, 0.2]},
        "student.hidden_size": {"randint": [16, 64]},
    }))
    space = tune_param_space(load_space(path, QUICK).entries)
    from ray.tune.search.sample import Categorical, Float, Integer
    assert isinstance(space["student.init"], Categorical)
    assert isinstance(space["student.dropout"], Float) and isinstance(space["student.hidden_size"], Integer)


@pytest.mark.parametrize("text, fragment", [
    ("student.hiden_size: {grid_search: [1, 2]}\n", "student.hiden_size: value 1 is not valid"),
    ("student.hidden_size: {grid_search: []}\n", "grid_search needs a non-empty list"),
    ("student.hidden_size: {grid_search: [100, 0]}\n", "student.hidden_size: value 0 is not valid for the experiment: must be > 0"),
    ("student.hidden_size: {grid: [1]}\n", "expected exactly one of grid_search"),
    ("student.init: {choice: [svd, xavier]}\n", "value 'xavier' is not valid"),
    ("student.dropout: {uniform: [0.5, 0.1]}\n", "needs [low, high] with low < high"),
    ("distill.heldout_fraction: {loguniform: [0, 0.1]}\n", "loguniform needs low > 0"),
    ("student.hidden_size: {grid_search: [100, 200]\n", "invalid YAML"),
    ("", "expected a non-empty mapping"),
    ("scheduler: {type: hyperband}\n", "scheduler.type: expected 'asha', got 'hyperband'"),
    ("scheduler: {grace_period: 0}\n", "scheduler.grace_period: must be >= 1"),
    ("scheduler: {grace_periods: 2}\n", "scheduler.grace_periods: unknown key (did you mean 'scheduler.grace_period'?)"),
    ("scheduler: asha\n", "scheduler: expected a mapping"),
])
def test_bad_space_files_name_file_and_key(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_space(path, QUICK)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_every_shipped_space_file_parses_against_the_experiment_its_first_line_names():
    for space_file in sorted((REPO / "experiments" / "spaces").glob("*.yaml")):
        first = space_file.read_text(encoding="utf-8").splitlines()[0]
        command = re.fullmatch(r"# xdray tune (experiments/\S+\.yaml) --space (experiments/spaces/\S+\.yaml)"
                               r"((?: --set \S+=\S+)*)", first)
        assert command, f"{space_file}: the first line should be the command that runs it, got {first!r}"
        assert REPO / command.group(2) == space_file, f"{space_file}: its command names {command.group(2)}"
        overrides = dict(parse_override(o) for o in command.group(3).split(" --set ")[1:])
        space = load_space(space_file, apply_overrides(read_yaml(REPO / command.group(1)), overrides))
        assert space.entries or space.scheduler, space_file


def test_scheduler_entry(tmp_path):
    path = write(tmp_path, "student.hidden_size: {grid_search: [16, 32]}\n"
                           "scheduler: {type: asha, grace_period: 2, reduction_factor: 3}\n")
    space = load_space(path, QUICK)
    assert space.keys == ("student.hidden_size",)
    assert (space.scheduler.type, space.scheduler.grace_period, space.scheduler.reduction_factor) == ("asha", 2, 3.0)


def test_asha_scheduler_counts_sub_stages():
    from ray.tune.schedulers import ASHAScheduler

    from xdray.distill.schema import SchedulerConfig
    from xdray.distill.tuning import asha_scheduler as _scheduler

    scheduler = _scheduler(SchedulerConfig(grace_period=20, reduction_factor=3), substages=9)
    assert isinstance(scheduler, ASHAScheduler)
    assert scheduler._time_attr == "substage_index" and scheduler._max_t == 9
    assert scheduler.metric == "dev_f1_mean" and scheduler._mode == "max" and scheduler._reduction_factor == 3
    assert _scheduler(None, substages=9) is None
