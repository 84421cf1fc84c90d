import datasets
import pytest

from conftest import labelled_of, tiny_raw, unlabelled_of
from xdray.config import load_experiment
from xdray.data.schema import WIKIANN_LABELS
from xdray.data import synthetic
from xdray.core.errors import DataError


def scripts(text: str) -> set[str]:
    """Rough script of each letter: Latin, Cyrillic, Greek, Devanagari."""
    out = set()
    for ch in text:
        cp = ord(ch)
        if ch.isalpha():
            out.add("latin" if cp < 0x250 else "greek" if 0x370 <= cp < 0x400 else
                    "cyrillic" if 0x400 <= cp < 0x530 else "devanagari" if 0x900 <= cp < 0x980 else "other")
    return out


def test_synthetic_is_deterministic_and_multiscript():
    assert synthetic.generate("en", "train", 50, seed=1) == synthetic.generate("en", "train", 50, seed=1)
    assert synthetic.generate("en", "train", 50, seed=1) != synthetic.generate("en", "train", 50, seed=2)
    assert len(synthetic.LANGUAGES) >= 6
    found = set()
    for lang in synthetic.LANGUAGES:
        for tokens, tags in synthetic.generate(lang, "train", 100, seed=0):
            assert len(tokens) == len(tags)
            found |= scripts(" ".join(tokens))
    assert {"latin", "cyrillic", "greek", "devanagari"} <= found


def test_synthetic_has_every_entity_type_and_held_out_names():
    train = synthetic.generate("en", "train", 400, seed=0)
    dev = synthetic.generate("en", "dev", 400, seed=0)
    types = {t[2:] for _, tags in train for t in tags if t != "O"}
    assert types == {"PER", "ORG", "LOC"}
    entity_words = lambda rows: {w for toks, tags in rows for w, t in zip(toks, tags) if t != "O"}
    unseen = entity_words(dev) - entity_words(train)
    assert unseen, "dev must hold entity names never seen in train"
    # ambiguity: a word that is a person in one sentence and a place in another
    kinds: dict[str, set] = {}
    for toks, tags in train:
        for w, t in zip(toks, tags):
            if t != "O":
                kinds.setdefault(w, set()).add(t[2:])
    assert any(len(k) > 1 for k in kinds.values())


def test_synthetic_source_through_config(write_experiment):
    data = labelled_of(load_experiment(write_experiment(tiny_raw())))
    assert set(data.splits) == {"train", "dev", "test"}
    assert len(data.splits["train"]) == 3 * 60 and data.languages == ["en", "hi", "ru"]
    row = data.splits["train"][0]
    assert set(row) == {"lang", "tokens", "ner_tags"}
    assert all(0 <= t < len(WIKIANN_LABELS) for t in row["ner_tags"])
    again = labelled_of(load_experiment(write_experiment(tiny_raw())))
    assert again.fingerprint == data.fingerprint
    other = labelled_of(load_experiment(write_experiment(tiny_raw(data__labelled__seed=99))))
    assert other.fingerprint != data.fingerprint


def test_synthetic_rejects_unknown_languages(write_experiment):
    cfg = load_experiment(write_experiment(tiny_raw(data__labelled__languages=["en", "xx"])))
    with pytest.raises(DataError, match=r"synthetic data has no \['xx'\]"):
        labelled_of(cfg)


def iob_experiment(write_experiment, tmp_path, **extra):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "dev"):
        for lang, word in (("en", "London"), ("ru", "Москва")):
            text = "".join(f"{word}\tB-LOC\nis\tO\nbig\tO\n\n" for _ in range(5))
            (corpus / f"{split}-{lang}.tsv").write_text(text, encoding="utf-8")
    raw = tiny_raw(data__labelled={"source": "iob", "path": "corpus", "languages": ["en", "ru"], **extra})
    return load_experiment(write_experiment(raw)), corpus


def test_iob_source_reads_split_files_relative_to_experiment(write_experiment, tmp_path):
    cfg, _ = iob_experiment(write_experiment, tmp_path, train_per_language=3)
    data = labelled_of(cfg)
    assert set(data.splits) == {"train", "dev"}  # test is optional
    assert len(data.splits["train"]) == 6 and len(data.splits["dev"]) == 10
    assert data.splits["dev"][5]["tokens"] == ["Москва", "is", "big"]
    assert data.splits["dev"][5]["lang"] == "ru"


def test_iob_source_missing_file_is_named(write_experiment, tmp_path):
    cfg, corpus = iob_experiment(write_experiment, tmp_path)
    (corpus / "dev-ru.tsv").unlink()
    with pytest.raises(DataError, match="missing file .*dev-ru.tsv"):
        labelled_of(cfg)


def test_panx_source(write_experiment, panx_dir):
    raw = tiny_raw(data__labelled={"source": "iob", "path": str(panx_dir), "languages": ["en", "ar", "hi"],
                                   "train_per_language": 50, "dev_per_language": 20})
    data = labelled_of(load_experiment(write_experiment(raw)))
    assert len(data.splits["train"]) == 150 and len(data.splits["dev"]) == 60
    assert data.languages == ["ar", "en", "hi"]


WIKIANN_FEATURES = datasets.Features({
    "tokens": datasets.Sequence(datasets.Value("string")),
    # WikiANN's own ClassLabel order; the converter must map names, not trust ids
    "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])),
    "langs": datasets.Sequence(datasets.Value("string")),
    "spans": datasets.Sequence(datasets.Value("string")),
})


def save_wikiann(root, lang, rows_per_split):
    dd = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({
            "tokens": [["Paris", "is", "nice"]] * n, "ner_tags": [[5, 0, 0]] * n,
            "langs": [[lang] * 3] * n, "spans": [["LOC: Paris"]] * n}, features=WIKIANN_FEATURES)
        for split, n in rows_per_split.items()})
    dd.save_to_disk(str(root / lang))


def test_wikiann_source_on_a_local_copy(write_experiment, tmp_path):
    root = tmp_path / "wikiann"
    for lang in ("en", "fr"):
        save_wikiann(root, lang, {"train": 4, "validation": 2, "test": 3})
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER", "B-ORG", "I-ORG"]  # a different order on purpose
    raw = tiny_raw(data__labelled={"source": "wikiann", "dataset": str(root), "languages": ["en", "fr"]},
                   data__labels=labels)
    data = labelled_of(load_experiment(write_experiment(raw)))
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 8, "dev": 4, "test": 6}
    assert [labels[t] for t in data.splits["test"][0]["ner_tags"]] == ["B-LOC", "O", "O"]


def test_wikiann_tags_outside_data_labels_are_refused(write_experiment, tmp_path):
    save_wikiann(tmp_path / "wikiann", "en", {"train": 2, "validation": 1})
    raw = tiny_raw(data__labelled={"source": "wikiann", "dataset": str(tmp_path / "wikiann"), "languages": ["en"]},
                   data__labels=["O", "B-PER", "I-PER"])
    with pytest.raises(DataError, match=r"wikiann/en/train:1: unknown tag 'B-LOC'"):
        labelled_of(load_experiment(write_experiment(raw)))


def test_wikiann_labels_default_to_the_classlabel_order(write_experiment, tmp_path):
    save_wikiann(tmp_path / "wikiann", "en", {"train": 2, "validation": 1})
    raw = tiny_raw(data__labelled={"source": "wikiann", "dataset": str(tmp_path / "wikiann"), "languages": ["en"]})
    assert labelled_of(load_experiment(write_experiment(raw))).labels == WIKIANN_LABELS


def test_unlabelled_sources(write_experiment, tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("Berlin ist groß\n\n  Hamburg auch  \n", encoding="utf-8")
    raw = tiny_raw(data__unlabelled=[{"source": "labelled", "split": "train", "max_sentences": 10},
                                     {"source": "text", "path": "text/*.txt", "lang": "de"}])
    cfg = load_experiment(write_experiment(raw))
    unlabelled = unlabelled_of(cfg, labelled_of(cfg))
    assert len(unlabelled) == 12 and set(unlabelled.column_names) == {"lang", "tokens"}
    assert unlabelled[-1] == {"lang": "de", "tokens": ["Hamburg", "auch"]}
    bad = tiny_raw(data__unlabelled=[{"source": "text", "path": "nothing/*.txt"}])
    cfg = load_experiment(write_experiment(bad))
    with pytest.raises(DataError, match="no file matches"):
        unlabelled_of(cfg, labelled_of(cfg))


def test_unlabelled_text_bad_utf8(write_experiment, tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\nbad \xff\n")
    cfg = load_experiment(write_experiment(tiny_raw(data__unlabelled=[{"source": "text", "path": "bad.txt"}])))
    with pytest.raises(DataError, match=r"bad.txt:2: invalid UTF-8"):
        unlabelled_of(cfg, labelled_of(cfg))


def test_unlabelled_iob_files_drop_labels_and_keep_languages(write_experiment, tmp_path):
    (tmp_path / "panx").mkdir()
    (tmp_path / "panx" / "train-fr.tsv").write_text("Paris\tB-LOC\nest\tO\n\nLe\tO\nMonde\tB-ORG\n", encoding="utf-8")
    (tmp_path / "panx" / "train-nl.tsv").write_text("Jan\tB-PER\n", encoding="utf-8")
    cfg = load_experiment(write_experiment(tiny_raw(data__unlabelled=[
        {"source": "iob", "path": "panx/train-*.tsv"}])))
    unlabelled = unlabelled_of(cfg, labelled_of(cfg))
    assert unlabelled.to_list() == [{"lang": "fr", "tokens": ["Paris", "est"]}, {"lang": "fr", "tokens": ["Le", "Monde"]},
                                    {"lang": "nl", "tokens": ["Jan"]}]
    # labels are dropped, so any tags (or none: one column) are fine; the columns must still agree
    (tmp_path / "panx" / "train-nl.tsv").write_text("Jan\tB-PERSON\nen\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train-nl.tsv:2: expected 2 columns"):
        unlabelled_of(cfg, labelled_of(cfg))
    (tmp_path / "panx" / "train-nl.tsv").write_text("Jan\nen\n", encoding="utf-8")
    assert unlabelled_of(cfg, labelled_of(cfg)).to_list()[-1] == {"lang": "nl", "tokens": ["Jan", "en"]}


def test_panx_minilm_experiment_reads_real_files(panx_dir):
    from conftest import REPO

    cfg = load_experiment(REPO / "experiments" / "panx_minilm_en.yaml",
                          {"data.unlabelled": [{"source": "iob", "path": str(panx_dir / "train-de.tsv"),
                                                "max_sentences": 50}]})
    unlabelled = unlabelled_of(cfg, labelled_of(cfg))
    assert len(unlabelled) == 50 and set(unlabelled["lang"]) == {"de"}
