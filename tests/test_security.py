"""Security defaults: no unpickling of user files, no remote code unless a config enables it,
local services on 127.0.0.1."""

import json
import re
from pathlib import Path

import pytest

from conftest import REPO

SOURCES = sorted((REPO / "xdray").rglob("*.py"))


@pytest.mark.parametrize("pattern, why", [
    (r"torch\.load\(", "checkpoints are safetensors; torch.load would unpickle"),
    (r"\bpickle\.|\bcloudpickle\.|\bjoblib\.load", "no pickles from user paths"),
    (r"yaml\.load\(|yaml\.unsafe_load|Loader=yaml\.Loader", "configs are read with yaml.safe_load"),
    (r"(?<![.\w])(eval|exec)\(", "configs never run code"),
    (r"trust_remote_code=True", "remote code only when a config turns it on"),
])
def test_no_unsafe_calls_in_the_sources(pattern, why):
    hits = [f"{path.relative_to(REPO)}:{n}" for path in SOURCES
            for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(pattern, line)]
    assert not hits, f"{why}: {hits}"


def model_loads(path: Path) -> list[tuple[int, bool]]:
    """(line, insists on safetensors) for every `<...Model...>.from_pretrained(...)` call in a file."""
    import ast

    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained":
            owner = ast.unparse(node.func.value)
            if "Model" in owner:
                safe = any(k.arg == "use_safetensors" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                calls.append((node.lineno, safe))
    return calls


def test_every_model_load_insists_on_safetensors():
    calls = {f"{path.relative_to(REPO)}:{line}": safe for path in SOURCES for line, safe in model_loads(path)}
    assert len(calls) >= 4, f"the model loaders should be found: {calls}"
    assert all(calls.values()), f"from_pretrained without use_safetensors=True: {[k for k, v in calls.items() if not v]}"


def tiny_bert(directory: Path, safe: bool) -> None:
    """A tiny token classifier saved as safetensors, or (safe=False) as a pickled
    pytorch_model.bin, the format older checkpoints on the hub still use."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=3)
    model = BertForTokenClassification(config)
    if safe:
        model.save_pretrained(directory)
    else:
        directory.mkdir(parents=True)
        config.save_pretrained(directory)
        torch.save(model.state_dict(), directory / "pytorch_model.bin")


def test_a_pickled_checkpoint_is_refused(tmp_path):
    from xdray.core.errors import TeacherError
    from xdray.teacher.load import load_token_classifier

    tiny_bert(tmp_path / "pickled", safe=False)
    assert (tmp_path / "pickled" / "pytorch_model.bin").exists()
    assert not list((tmp_path / "pickled").glob("*.safetensors"))
    with pytest.raises(TeacherError, match="cannot load"):
        load_token_classifier(str(tmp_path / "pickled"))
    tiny_bert(tmp_path / "safe", safe=True)
    assert load_token_classifier(str(tmp_path / "safe")).config.num_labels == 3


def test_remote_code_is_not_run_unless_enabled(tmp_path):
    from xdray.core.errors import TeacherError
    from xdray.teacher.load import load_token_classifier

    model = tmp_path / "custom"
    tiny_bert(model, safe=True)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="xdray-custom", auto_map={"AutoConfig": "modeling.CustomConfig",
                                                       "AutoModelForTokenClassification": "modeling.Custom"})
    (model / "config.json").write_text(json.dumps(config))
    sentinel = tmp_path / "ran"
    (model / "modeling.py").write_text(f"open({str(sentinel)!r}, 'w').write('remote code ran')\n")
    with pytest.raises(TeacherError):
        load_token_classifier(str(model))
    assert not sentinel.exists(), "remote code ran although trust_remote_code is off"


def test_the_local_dashboard_listens_on_loopback(ray_local):
    import ray

    url = ray._private.worker.global_worker.node.address_info["webui_url"]
    assert url.split(":")[0] == "127.0.0.1", url
