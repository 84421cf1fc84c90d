"""Raw text to words with offsets, and BIO tags to entity spans."""

import pytest

from xdray.serve.text import entities, split_words


def words_of(line):
    return [(w.text, w.start, w.end) for w in split_words(line)]


def test_punctuation_is_split_off_and_offsets_point_into_the_line():
    line = "  Paris, (France) said Anna."
    ws = split_words(line)
    assert [w.text for w in ws] == ["Paris", ",", "(", "France", ")", "said", "Anna", "."]
    assert all(line[w.start:w.end] == w.text for w in ws)


def test_scripts_without_spaces_and_combining_marks():
    assert [w for w, _, _ in words_of("习近平访问北京。")] == ["习", "近", "平", "访", "问", "北", "京", "。"]
    assert [w for w, _, _ in words_of("東京タワーへ")] == ["東", "京", "タ", "ワ", "ー", "へ"]
    # Devanagari vowel signs and Arabic letters stay inside their words
    assert [w for w, _, _ in words_of("नरेंद्र मोदी दिल्ली में")] == ["नरेंद्र", "मोदी", "दिल्ली", "में"]
    assert [w for w, _, _ in words_of("القاهرة، مصر")] == ["القاهرة", "،", "مصر"]
    assert words_of("") == [] and words_of(" \t ") == []


def test_bio_decoding_never_starts_an_entity_with_i():
    line = "Anna Schmidt and Acme Corp in Berlin"
    ws = split_words(line)
    tags = ["B-PER", "I-PER", "O", "I-ORG", "I-ORG", "O", "B-LOC"]
    scores = [0.9, 0.7, 1.0, 0.6, 0.8, 1.0, 0.5]
    out = entities(line, ws, tags, scores)
    assert [(e["text"], e["label"]) for e in out] == [("Anna Schmidt", "PER"), ("Acme Corp", "ORG"), ("Berlin", "LOC")]
    assert out[0]["score"] == pytest.approx(0.8) and out[1]["start"] == line.index("Acme")
    assert all(line[e["start"]:e["end"]] == e["text"] for e in out)


def test_a_type_change_or_a_new_b_starts_a_new_entity():
    line = "A B C D"
    ws = split_words(line)
    out = entities(line, ws, ["B-PER", "I-LOC", "B-LOC", "B-LOC"], [1.0] * 4)
    assert [(e["text"], e["label"]) for e in out] == [("A", "PER"), ("B", "LOC"), ("C", "LOC"), ("D", "LOC")]
