"""Names of trials and of the transfer sets they read: stable hashes of the settings that change
what is trained, so a rerun finds finished work and a changed setting never reuses it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xdray.core.loader import config_to_dict, digest

if TYPE_CHECKING:
    from xdray.config import ExperimentConfig

# Config sections that decide what a trial trains; the rest (search, eval, report, runtime) do not,
# and neither do these placement settings of the transfer build.
TRIAL_SECTIONS = ("seed", "data", "teacher", "transfer", "student", "distill")
PLACEMENT = {"transfer": ("actors", "batch_size", "micro_batch", "resources_per_actor")}
# Settings added after runs existed (dotted; a list applies the rest of the path to each item),
# with the default that reproduces the old behaviour: a trial at that default keeps the key it had
# before the setting existed, so its results are reused.
ADDED_SETTINGS = {
    "student.rep_projection": "gelu", "student.vocab_size": 0,
    "data.labelled.train": None, "data.labelled.dev": None, "data.labelled.test": None,
    "data.labelled.scheme": "iob2", "data.labelled.token_column": 0, "data.labelled.tag_column": -1,
    "data.unlabelled.token_column": 0,
}


def _drop_default(node, path: list[str], default) -> None:
    """Remove the setting at `path` from the nested dict `node` where it equals `default`."""
    if isinstance(node, list):
        for item in node:
            _drop_default(item, path, default)
    elif isinstance(node, dict) and path[0] in node:
        if len(path) == 1:
            if node[path[0]] == default:
                del node[path[0]]
        else:
            _drop_default(node[path[0]], path[1:], default)


def trial_key(cfg: ExperimentConfig) -> str:
    """E<dim>-H<hidden>-<hash of every training setting>: stable across runs and machines."""
    settings = {name: config_to_dict(getattr(cfg, name)) for name in TRIAL_SECTIONS}
    for section, keys in PLACEMENT.items():
        settings[section] = {k: v for k, v in settings[section].items() if k not in keys}
    for dotted, default in ADDED_SETTINGS.items():
        _drop_default(settings, dotted.split("."), default)
    return f"E{cfg.student.embedding_dim}-H{cfg.student.hidden_size}-{digest(settings, 8)}"


def transfer_key(cfg: ExperimentConfig) -> str:
    """Which transfer set a trial reads: a hash of its transfer settings."""
    return digest(config_to_dict(cfg.transfer), 12)
