"""A user's own files and own model, end to end: experiments/own_data.yaml (CoNLL-2003 layout,
IOB1, MISC) with a Hugging Face encoder from disk through teacher, transfer, a 2-student grid,
report and export, then the student from Python. The shipped experiment names the MiniLM package;
here the model is a tiny BERT saved with save_pretrained, the same `teacher.model` path a user
gives for their own folder."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import REPO
from xdray.cli import main

TYPES = {"PER", "ORG", "LOC", "MISC"}


def own_encoder(directory) -> None:
    """A user's encoder: a BertModel (no token-classification head) and its tokenizer on disk."""
    from transformers import BertConfig, BertModel

    from xdray.data.iob import read_iob_file
    from xdray.teacher.wordpiece import train_wordpiece

    words = read_iob_file(REPO / "tests" / "data" / "own_data" / "eng.train", lang="en", scheme="iob1").tokens
    tokenizer = train_wordpiece(words, 400)
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@pytest.mark.slow
def test_own_conll_files_and_model_to_a_student_used_from_python(ray_local, tmp_path, capsys):
    import xdray

    own_encoder(tmp_path / "my-encoder")
    run = tmp_path / "run"
    code = main(["run", str(REPO / "experiments" / "own_data.yaml"), "--out", str(run),
                 "--set", f"teacher.model={tmp_path / 'my-encoder'}", "--set", "teacher.finetune.epochs=30",
                 "--set", "teacher.finetune.lr=0.003"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "fine-tuned for 30 epochs" in printed, "the teacher stage says what it did with the model"

    saved = yaml.safe_load((run / "config.yaml").read_text())
    labels = saved["data"]["labels"]
    assert labels == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"], \
        "read from the files, MISC included"
    teacher = json.loads((run / "teacher" / "config.json").read_text())
    assert len(teacher["id2label"]) == 9 and teacher["id2label"]["3"] == "B-MISC"
    metrics = json.loads((run / "teacher" / "metrics.json").read_text())
    assert set(metrics["test"]["per_language"]) == {"en"}, "eng.testb is the test split"

    tagger = xdray.load(run)
    assert tagger.labels == labels and "export" in str(tagger.path)
    text = "Lena Marsh visited Porto Alba on Monday ."
    for entity in tagger(text):
        assert entity["label"] in TYPES and text[entity["start"]:entity["end"]] == entity["text"]
    assert len(tagger.tag_words(text.split())) == 8
    card = tagger.card
    assert card.metadata["language"] == ["en"] and "base_model" not in card.metadata  # a local folder, no hub id
    assert "my-encoder with a new head" in card.text
    assert "eng.train (train)" in card.text and "B-MISC" in card.text
