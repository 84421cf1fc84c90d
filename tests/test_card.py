"""The model card: Hugging Face-style YAML metadata that reads back, and the numbers it states."""

import pytest

from xdray.core.errors import XdrayError
from xdray.serve.card import CardFacts, read_card, render_card


def report(mean, per_language):
    return {"f1_mean": mean, "f1_micro": mean, "per_language": per_language}


FACTS = CardFacts(
    name="study-E50-H100-1a2b3c4d", trial="E50-H100-1a2b3c4d", teacher="checkpoint ./ner used as it is",
    teacher_model="./ner", labels=["O", "B-X", "I-X"], languages=["de", "en"], data="conll files a (train)",
    sentences={"train": 10, "dev": 4}, served="ONNX Runtime on student.onnx (fp32)",
    f1={"dev": report(0.75, {"de": 0.7, "en": 0.8})}, teacher_f1={"dev": report(0.8, {"de": 0.8, "en": 0.8})},
    params=1234, compression={"the teacher": 40.0}, command="xdray export RUN --trial E50-H100-1a2b3c4d",
    experiment="study", seed=3)


def test_metadata_reads_back_with_the_measured_numbers(tmp_path):
    path = tmp_path / "README.md"
    path.write_text(render_card(FACTS), encoding="utf-8")
    card = read_card(path)
    assert card.metadata["language"] == ["de", "en"] and "base_model" not in card.metadata, "a path is no hub id"
    (result,) = card.metadata["model-index"][0]["results"]
    assert result["dataset"]["split"] == "validation" and result["metrics"][0]["value"] == 0.75
    assert "| de | 0.7000 | 0.8000 | 0.875 |" in card.text and "compression 40x against the teacher" in card.text
    assert "Latency was not measured" in card.text and "(seed 3)" in card.text
    from dataclasses import replace

    hub = read_card_of(tmp_path, replace(FACTS, teacher_model="org/bert-ner", compression={}))
    assert hub.metadata["base_model"] == "org/bert-ner" and "(1,234 parameters) distilled" in hub.text


def read_card_of(tmp_path, facts):
    path = tmp_path / "other.md"
    path.write_text(render_card(facts), encoding="utf-8")
    return read_card(path)


def test_a_card_without_metadata_and_a_broken_one(tmp_path):
    plain = tmp_path / "plain.md"
    plain.write_text("# just text\n", encoding="utf-8")
    assert read_card(plain).metadata == {} and read_card(plain).text == "# just text\n"
    broken = tmp_path / "broken.md"
    broken.write_text("---\nlanguage: [en\n---\ntext\n", encoding="utf-8")
    with pytest.raises(XdrayError, match="broken.md: the card's metadata is not valid YAML"):
        read_card(broken)
