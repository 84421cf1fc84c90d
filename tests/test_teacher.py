import json

import pytest
import torch
from transformers import AutoModelForTokenClassification, BertConfig, BertModel

from conftest import tiny_raw
from xdray.config import load_experiment
from xdray.data.schema import WIKIANN_LABELS
from xdray.core.errors import DataError, TeacherError
from xdray.core.stage import PARTIAL
from xdray.pipeline import labelled_data, teacher_settings
from xdray.teacher.load import build_teacher, evaluate_teacher, initial_teacher, load_tokenizer
from xdray.teacher.stage import encode_splits, run_teacher_stage, weights_fingerprint


@pytest.fixture
def tiny(write_experiment):
    """(cfg, data) as a run resolves them: labels from the data, or a finetuned checkpoint's."""
    def make(**sections):
        return labelled_data(load_experiment(write_experiment(tiny_raw(**sections))))
    return make


def test_build_teacher_offline(tiny):
    cfg, data = tiny()
    model, tokenizer = build_teacher(cfg.teacher.build, cfg.seed, data)
    assert model.config.num_labels == 7 and model.config.id2label[1] == "B-PER"
    assert model.get_input_embeddings().num_embeddings == len(tokenizer) <= 600
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    ids = tokenizer(["Москва"], is_split_into_words=True)["input_ids"]
    assert tokenizer.unk_token_id not in ids  # the vocabulary covers the non-Latin training text


def test_evaluate_save_and_skip(tiny, tmp_path):
    """The stage on a teacher evaluated as built (epochs 0, no Ray). A Ray Train fine-tune's output
    (it learns, it is saved as its metrics describe) is checked in test_determinism, on the
    teacher it fine-tunes twice anyway."""
    cfg, data = tiny(teacher__finetune={"epochs": 0})
    run_dir = tmp_path / "run"
    out = run_teacher_stage(teacher_settings(cfg), data, run_dir)
    assert not out.skipped and out.path == run_dir / "teacher"
    files = {p.name for p in out.path.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "fingerprint.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    metrics = json.loads((out.path / "metrics.json").read_text())
    for split in ("dev", "test"):
        assert set(metrics[split]) >= {"f1_mean", "f1_std", "f1_micro", "per_language"}
        assert set(metrics[split]["per_language"]) == {"en", "ru", "hi"}
    assert metrics["start"]["finetune_epochs"] == 0 and "history" not in metrics, "evaluated as built"
    assert out.fingerprint == weights_fingerprint(out.path)
    assert not out.path.with_name(out.path.name + PARTIAL).exists(), "the staging directory is published, not left"

    # The saved model is the one the metrics describe.
    model = AutoModelForTokenClassification.from_pretrained(out.path)
    tokenizer = load_tokenizer(str(out.path))
    dev = encode_splits(tokenizer, data, cfg.data.max_length)["dev"]
    again = evaluate_teacher(model, dev, data.labels)
    assert again["f1_mean"] == pytest.approx(metrics["dev"]["f1_mean"])

    # Same inputs: skipped, nothing rewritten.
    mtime = (out.path / "model.safetensors").stat().st_mtime_ns
    second = run_teacher_stage(teacher_settings(cfg), data, run_dir)
    assert second.skipped and second.fingerprint == out.fingerprint
    assert (out.path / "model.safetensors").stat().st_mtime_ns == mtime

    # (Same config and seed in another run directory giving the very same teacher is
    # test_determinism's: it fine-tunes twice anyway.)

    # Different inputs (another seed, so other weights): rebuilt in place.
    cfg2, data2 = tiny(seed=1, teacher__finetune={"epochs": 0})
    third = run_teacher_stage(teacher_settings(cfg2), data2, run_dir)
    assert not third.skipped and third.fingerprint != out.fingerprint


@pytest.fixture
def encoder_dir(tmp_path, tiny):
    """A local pretrained encoder (no token-classification head) with its tokenizer."""
    cfg, data = tiny()
    _, tokenizer = build_teacher(cfg.teacher.build, cfg.seed, data)
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=64, max_position_embeddings=32))
    path = tmp_path / "encoder"
    encoder.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_pretrained_encoder_gets_a_new_head(tiny, encoder_dir, tmp_path):
    cfg, data = tiny(teacher={"init": "pretrained", "model": str(encoder_dir), "finetune": {"epochs": 0}})
    model, tokenizer = initial_teacher(cfg.teacher, cfg.base_dir, cfg.seed, data)
    assert model.config.num_labels == len(WIKIANN_LABELS)
    assert model.classifier.out_features == len(WIKIANN_LABELS)
    encoder = BertModel.from_pretrained(encoder_dir)
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, encoder.embeddings.word_embeddings.weight)
    out = run_teacher_stage(teacher_settings(cfg), data, tmp_path / "run")  # epochs 0: evaluated as it is, no Ray needed
    assert set(out.metrics) >= {"dev", "test"}


def save_classifier(path, labels, tokenizer, vocab_rows=None):
    model = AutoModelForTokenClassification.from_config(BertConfig(
        vocab_size=vocab_rows or len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.mark.parametrize("labels, fragment", [
    (["O", "B-PER", "I-PER"], "the data has ['LOC', 'ORG'], which the teacher lacks"),
    (list(WIKIANN_LABELS) + ["B-MISC", "I-MISC"], "the teacher has ['MISC'], which the data lacks"),
])
def test_finetuned_checkpoint_must_cover_the_datas_types(tiny, tmp_path, labels, fragment):
    cfg, data = tiny()
    _, tokenizer = build_teacher(cfg.teacher.build, cfg.seed, data)
    save_classifier(tmp_path / "ckpt", labels, tokenizer)
    with pytest.raises(DataError, match="the checkpoint predicts") as err:
        tiny(teacher={"init": "finetuned", "model": str(tmp_path / "ckpt")})
    assert fragment in str(err.value) and "init: pretrained" in str(err.value)


def test_finetuned_checkpoint_gives_the_label_order_and_is_not_trained_further(tiny, tmp_path):
    cfg, data = tiny()
    _, tokenizer = build_teacher(cfg.teacher.build, cfg.seed, data)
    theirs = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG")  # not the data's own order
    save_classifier(tmp_path / "ckpt", theirs, tokenizer)
    cfg, data = tiny(teacher={"init": "finetuned", "model": str(tmp_path / "ckpt")})
    assert cfg.data.labels == data.labels == theirs and cfg.teacher.finetune.epochs == 0
    model, _ = initial_teacher(cfg.teacher, cfg.base_dir, cfg.seed, data)
    assert model.config.id2label[1] == "B-LOC"


def test_tokenizer_that_does_not_fit_the_model(tiny, tmp_path):
    cfg, data = tiny()
    _, tokenizer = build_teacher(cfg.teacher.build, cfg.seed, data)
    save_classifier(tmp_path / "ckpt", WIKIANN_LABELS, tokenizer, vocab_rows=50)
    cfg, data = tiny(teacher={"init": "finetuned", "model": str(tmp_path / "ckpt")})
    with pytest.raises(TeacherError, match="do not belong together"):
        initial_teacher(cfg.teacher, cfg.base_dir, cfg.seed, data)


def test_missing_model_directory(tiny, tmp_path):
    cfg, data = tiny(teacher={"init": "pretrained", "model": str(tmp_path / "nowhere")})
    with pytest.raises(TeacherError, match="does not exist"):
        initial_teacher(cfg.teacher, cfg.base_dir, cfg.seed, data)


def test_package_model_reference(tmp_path, monkeypatch):
    """teacher.model: package:NAME resolves to NAME.get_model_path() (the minilm extra ships one)."""
    from xdray.core.errors import TeacherError
    from xdray.teacher.load import package_model_path

    (tmp_path / "shipped_model_pkg.py").write_text(f"def get_model_path():\n    return {str(tmp_path)!r}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_model_path("shipped_model_pkg") == str(tmp_path)
    with pytest.raises(TeacherError, match="package:no_such_pkg_xyz: the package is not installed"):
        package_model_path("no_such_pkg_xyz")
    with pytest.raises(TeacherError, match="package:json: the package has no get_model_path"):
        package_model_path("json")
