"""The files users have: CoNLL column files in any layout and scheme, one file per split, Hugging
Face datasets (save_to_disk, JSON lines, Parquet), and label sets read from the data."""

from pathlib import Path

import datasets
import pytest

from conftest import REPO, labelled_of, tiny_raw
from xdray.config import load_experiment
from xdray.core.errors import DataError
from xdray.data.iob import Columns, read_iob_file
from xdray.data.sources import resolve_labels

OWN = REPO / "tests" / "data" / "own_data"
UNER = REPO.parent / "shared" / "data" / "uner"

CONLL2003 = """-DOCSTART- -X- -X- O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER
Lena NNP B-NP B-PER
. . O O
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_conll2003_four_columns_iob1_to_iob2(tmp_path):
    parsed = read_iob_file(write(tmp_path, "eng.train", CONLL2003), lang="en", scheme="iob1")
    assert parsed.tokens == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn", "Lena", "."]]
    assert parsed.tags == [["B-ORG", "O", "B-MISC", "O", "O"], ["B-PER", "I-PER", "B-PER", "O"]]
    assert parsed.first_lines == [3, 9]


def test_iob1_read_as_iob2_says_which_scheme_it_looks_like(tmp_path):
    with pytest.raises(DataError, match=r"eng.train: the tags look like iob1, not the declared iob2: 3 of 3 entities "
                                        r"begin with I- \(first at line 3\); set data.labelled.scheme: iob1"):
        read_iob_file(write(tmp_path, "eng.train", CONLL2003), lang="en")


def test_iob2_read_as_iob1_and_bioes_are_named(tmp_path):
    iob2 = "John B-PER\nSmith I-PER\nin O\nRome B-LOC\n\nParis B-LOC\n"
    with pytest.raises(DataError, match="look like iob2, not the declared iob1: 3 of 3 entities begin with B- after O"):
        read_iob_file(write(tmp_path, "a-en.txt", iob2), scheme="iob1")
    with pytest.raises(DataError, match="look like iob2, not the declared bioes"):
        read_iob_file(write(tmp_path, "a-en.txt", iob2), scheme="bioes")


def test_bioes_and_bilou_convert_to_iob2(tmp_path):
    text = "John B-PER\nvan I-PER\nSmith E-PER\nin O\nRome S-LOC\n\nAda U-PER\nLove L-PER\n"
    parsed = read_iob_file(write(tmp_path, "a-en.txt", text), scheme="bioes")
    assert parsed.tags == [["B-PER", "I-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER"]]


def test_uner_layout_comments_and_columns(tmp_path):
    text = ("# sent_id = x-1\n# text = where in tampa bay\n1\twhere\tO\t-\t-\n2\tin\tO\t-\t-\n"
            "3\ttampa\tB-LOC\t-\tann\n4\tbay\tI-LOC\t-\tann\n\n# sent_id = x-2\n1\t#\tO\t-\t-\n")
    parsed = read_iob_file(write(tmp_path, "ewt.iob2", text), lang="en", columns=Columns(token=1, tag=2))
    assert parsed.tokens == [["where", "in", "tampa", "bay"], ["#"]]
    assert parsed.tags[0] == ["O", "O", "B-LOC", "I-LOC"]
    assert parsed.first_lines == [3, 9]


def test_a_hash_token_in_a_two_column_file_is_a_word(tmp_path):
    parsed = read_iob_file(write(tmp_path, "a-en.tsv", "# a comment\n#\tO\ntag\tO\n"))
    assert parsed.tokens == [["#", "tag"]]


def test_real_universal_ner_file():
    path = UNER / "en_ewt-ud-dev.iob2"
    if not path.exists():
        pytest.skip("../shared/data/uner is absent")
    parsed = read_iob_file(path, lang="en", columns=Columns(token=1, tag=2))
    assert len(parsed.tokens) == 2001
    assert {t for tags in parsed.tags for t in tags} >= {"B-PER", "I-ORG", "B-LOC"}


def conll_experiment(write_experiment, **labelled):
    raw = tiny_raw(data__labelled={"source": "conll", "languages": ["en"], **labelled})
    return load_experiment(write_experiment(raw))


def test_one_file_per_split_and_labels_from_the_data(write_experiment):
    cfg = conll_experiment(write_experiment, train=str(OWN / "eng.train"), dev=str(OWN / "eng.testa"),
                           test=str(OWN / "eng.testb"), scheme="iob1")
    data = labelled_of(cfg)
    assert data.labels == ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 48, "dev": 16, "test": 16}
    assert data.languages == ["en"]
    first = data.splits["train"][0]
    names = [data.labels[t] for t in first["ner_tags"]]
    assert names[0].startswith("B-") and "I-" not in names[0]  # IOB1 converted: entities begin with B-


def test_relative_split_files_and_missing_ones(write_experiment, tmp_path):
    write(tmp_path, "train.conll", "Rome B-LOC\nis O\n")
    write(tmp_path, "valid.conll", "Oslo B-LOC\n")
    cfg = conll_experiment(write_experiment, train="train.conll", dev="valid.conll")
    assert labelled_of(cfg).labels == ("O", "B-LOC", "I-LOC")
    cfg = conll_experiment(write_experiment, train="train.conll", dev="nope.conll")
    with pytest.raises(DataError, match=r"data.labelled.dev: .*nope.conll does not exist"):
        labelled_of(cfg)


def test_declared_labels_fix_the_order_and_refuse_others(write_experiment, tmp_path):
    write(tmp_path, "train.conll", "Rome B-LOC\nis O\nAda B-PER\n")
    cfg = load_experiment(write_experiment(tiny_raw(
        data__labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"],
        data__labelled={"source": "conll", "languages": ["en"], "train": "train.conll", "dev": "train.conll"})))
    assert labelled_of(cfg).labels == ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
    write(tmp_path, "train.conll", "Rome B-LOC\nis O\nAcme B-ORG\n")
    with pytest.raises(DataError, match=r"train.conll:3: unknown tag 'B-ORG'"):
        labelled_of(cfg)


def test_a_finetuned_teachers_labels_win_and_must_match():
    seen = {"O", "B-PER", "B-LOC", "I-LOC"}
    teacher = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    assert resolve_labels((), teacher, "teacher.model 'x'", seen, None) == teacher
    with pytest.raises(DataError, match=r"the data has \['MISC'\], which the teacher lacks"):
        resolve_labels((), teacher, "teacher.model 'x'", seen | {"B-MISC"}, None)
    with pytest.raises(DataError, match=r"the teacher has \['LOC'\], which the data lacks"):
        resolve_labels((), teacher, "teacher.model 'x'", {"O", "B-PER"}, None)


FEATURES = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                              "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-X", "I-X", "B-PRODUCT", "I-PRODUCT"]))})


def test_save_to_disk_dataset_dict_with_validation(write_experiment, tmp_path):
    rows = {"tokens": [["Ada", "sells", "Widgets"], ["no", "entity"]], "ner_tags": [[1, 0, 3], [0, 0]]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=FEATURES),
                          "validation": datasets.Dataset.from_dict(rows, features=FEATURES)}).save_to_disk(str(tmp_path / "hf"))
    raw = tiny_raw(data__labelled={"source": "datasets", "path": "hf", "languages": ["en"]})
    data = labelled_of(load_experiment(write_experiment(raw)))
    assert data.labels == ("O", "B-X", "I-X", "B-PRODUCT", "I-PRODUCT")  # the ClassLabel's own order
    assert set(data.splits) == {"train", "dev"} and len(data.splits["dev"]) == 2
    assert data.splits["train"][0]["ner_tags"] == [1, 0, 3]


def test_jsonl_with_string_tags_and_parquet_with_ids(write_experiment, tmp_path):
    import json

    lines = [{"tokens": ["Ada", "in", "Rome"], "ner_tags": ["B-PER", "O", "B-LOC"], "lang": "it"},
             {"tokens": ["Oslo"], "ner_tags": ["B-LOC"], "lang": "no"}]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    datasets.Dataset.from_dict({"tokens": [["Rome"]], "ner_tags": [[3]]}).to_parquet(str(tmp_path / "dev.parquet"))
    labelled = {"source": "datasets", "train": "train.jsonl", "dev": "dev.parquet", "languages": ["it"]}
    with pytest.raises(DataError, match="dev.parquet: ner_tags are integers with no ClassLabel names; list the tag "
                                        "names in data.labels"):
        labelled_of(load_experiment(write_experiment(tiny_raw(data__labelled=labelled))))
    raw = tiny_raw(data__labelled=labelled, data__labels=["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    data = labelled_of(load_experiment(write_experiment(raw)))
    assert data.splits["train"]["lang"] == ["it", "no"]  # a lang column wins
    assert data.splits["dev"][0] == {"lang": "it", "tokens": ["Rome"], "ner_tags": [3]}
    lines[1]["ner_tags"] = ["S-LOC"]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(DataError, match=r"train.jsonl: the tags look like bioes"):
        labelled_of(load_experiment(write_experiment(raw)))


def test_dataset_errors_name_file_and_row(write_experiment, tmp_path):
    (tmp_path / "train.jsonl").write_text('{"tokens": ["a", "b"], "ner_tags": ["O"]}\n')
    raw = tiny_raw(data__labelled={"source": "datasets", "train": "train.jsonl", "dev": "train.jsonl",
                                   "languages": ["en"]})
    with pytest.raises(DataError, match=r"train.jsonl:1: 2 tokens but 1 ner_tags"):
        labelled_of(load_experiment(write_experiment(raw)))
    (tmp_path / "train.jsonl").write_text('{"words": ["a"], "ner_tags": ["O"]}\n')
    with pytest.raises(DataError, match=r"train.jsonl: no column tokens"):
        labelled_of(load_experiment(write_experiment(raw)))


def test_a_comment_inside_a_sentence_keeps_line_numbers_right(tmp_path):
    path = write(tmp_path, "a-en.txt", "John B-PER\n# a note\nSmith X_PER\n")
    with pytest.raises(DataError, match=r"a-en.txt:3: 'X_PER' in the tag column"):
        read_iob_file(path)
    path = write(tmp_path, "b-en.txt", "John B-PER\n# a note\nSmith I-PER\nis O\n")
    parsed = read_iob_file(path)
    assert parsed.line_of(0, 1) == 3 and parsed.line_of(0, 2) == 4
    from xdray.data.iob import check_tags

    with pytest.raises(DataError, match=r"b-en.txt:3: unknown tag 'I-PER'"):
        check_tags(parsed, ["O", "B-PER"])


def test_the_old_iob_name_keeps_wikiann_order(write_experiment, tmp_path):
    write(tmp_path, "train.conll", "Rome B-LOC\nAda B-PER\nAcme B-ORG\n")
    for source, order in (("iob", ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")),
                          ("conll", ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"))):
        cfg = load_experiment(write_experiment(tiny_raw(data__labelled={
            "source": source, "languages": ["en"], "train": "train.conll", "dev": "train.conll"})))
        assert labelled_of(cfg).labels == order


def test_a_finetuned_teacher_and_data_labels_in_another_order_are_refused():
    teacher = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    with pytest.raises(DataError, match="leave data.labels out, or give it in the checkpoint's order"):
        resolve_labels(("O", "B-PER", "I-PER", "B-LOC", "I-LOC"), teacher, "teacher.model 'x'", {"O", "B-PER"}, None)


def test_dataset_layout_errors(write_experiment, tmp_path):
    rows = {"tokens": [["Ada"]], "ner_tags": [[1]]}
    datasets.Dataset.from_dict(rows, features=FEATURES).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=FEATURES)}).save_to_disk(str(tmp_path / "dd"))
    cases = [({"path": "one", "languages": ["en"]}, "holds one Dataset, not a DatasetDict"),
             ({"path": "dd", "languages": ["en"]}, r"dd has no dev split \(expected one of dev, validation, valid; it has train\)"),
             ({"train": "one", "dev": "one"}, "no lang column, so name the data's one language")]
    for labelled, message in cases:
        raw = tiny_raw(data__labelled={"source": "datasets", **labelled})
        with pytest.raises(DataError, match=message):
            labelled_of(load_experiment(write_experiment(raw)))


def test_parquet_with_large_string_tags(write_experiment, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"tokens": pa.array([["Ada", "sat"]], pa.list_(pa.large_string())),
                      "ner_tags": pa.array([["B-PER", "O"]], pa.list_(pa.large_string()))})
    pq.write_table(table, tmp_path / "train.parquet")
    raw = tiny_raw(data__labelled={"source": "datasets", "train": "train.parquet", "dev": "train.parquet",
                                   "languages": ["en"]})
    assert labelled_of(load_experiment(write_experiment(raw))).labels == ("O", "B-PER", "I-PER")
