from pathlib import Path

import pytest

from xdray.data.schema import WIKIANN_LABELS
from xdray.data.iob import language_from_filename, read_iob_file
from xdray.core.errors import DataError

L = WIKIANN_LABELS


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def tags(parsed, i):
    return parsed.tags[i]


def test_reads_tabs_spaces_docstart_and_language_from_name(tmp_path):
    path = write(tmp_path, "train-de.tsv", "-DOCSTART-\tO\n\nAngela\tB-PER\nMerkel I-PER\nin\tO\nBerlin\tB-LOC\n\n\nSiemens\tB-ORG\n")
    parsed = read_iob_file(path, L)
    assert parsed.tokens == [["Angela", "Merkel", "in", "Berlin"], ["Siemens"]]
    assert tags(parsed, 0) == ["B-PER", "I-PER", "O", "B-LOC"]
    assert parsed.langs == ["de", "de"]


def test_raw_wikiann_language_prefixes(tmp_path):
    path = write(tmp_path, "mixed.txt", "en:London\tB-LOC\nen:calling\tO\n\nfr:Paris\tB-LOC\n")
    parsed = read_iob_file(path, L)
    assert parsed.tokens == [["London", "calling"], ["Paris"]]
    assert parsed.langs == ["en", "fr"]


def test_bom_and_crlf_are_accepted(tmp_path):
    path = write(tmp_path, "dev-en.tsv", b"\xef\xbb\xbfJohn\tB-PER\r\nSmith\tI-PER\r\n\r\nhi\tO\r\n")
    parsed = read_iob_file(path, L)
    assert parsed.tokens == [["John", "Smith"], ["hi"]]


def test_i_after_o_is_accepted_and_counted(tmp_path):
    """A few (WikiANN has them) are kept as they are; a file where most entities begin with I- is
    IOB1 read as iob2, and fails (test_readers)."""
    path = write(tmp_path, "x-zh.tsv", "a\tO\nb\tI-LOC\nc\tB-PER\nd\tI-ORG\ne\tB-LOC\nf\tO\ng\tB-ORG\n")
    parsed = read_iob_file(path, L)
    assert parsed.i_after_o == 2
    assert tags(parsed, 0) == ["O", "I-LOC", "B-PER", "I-ORG", "B-LOC", "O", "B-ORG"]


@pytest.mark.parametrize("content, fragment", [
    ("John\tB-PER\nSmith\tI-PER\textra\n", "x-en.tsv:2: expected 2 columns (token<TAB>TAG) as on the file's "
     "first token line, found 3"),
    ("John\n", "x-en.tsv: expected a token and a tag column, found 1 column"),
    ("John\tB-PER\n\nSmith\tB_PER\n", "x-en.tsv:3: 'B_PER' in the tag column (token<TAB>TAG) is not a tag"),
    ("John\tB-PERSON\n", "x-en.tsv:1: unknown tag 'B-PERSON'"),
    (b"ok\tO\n\nbad\xff\xfe\tO\n", "x-en.tsv:3: invalid UTF-8"),
    ("", "x-en.tsv: no sentences"),
    ("\n\n", "x-en.tsv: no sentences"),
    ("-DOCSTART- O\n\n-DOCSTART- O\n", "x-en.tsv: no sentences"),
    ("John\tB-PER\nSmith\tE-PER\n", "x-en.tsv: the tags look like bioes, not the declared iob2"),
])
def test_errors_name_file_and_line(tmp_path, content, fragment):
    path = write(tmp_path, "x-en.tsv", content)
    with pytest.raises(DataError) as err:
        read_iob_file(path, L)
    assert fragment in str(err.value)


def test_language_must_be_known(tmp_path):
    path = write(tmp_path, "data.tsv", "John\tB-PER\n")
    with pytest.raises(DataError, match="cannot tell the language"):
        read_iob_file(path, L)
    assert read_iob_file(path, L, lang="en").langs == ["en"]


def test_language_from_filename():
    assert language_from_filename(Path("train-en.tsv")) == "en"
    assert language_from_filename(Path("dev_zh.tsv")) == "zh"
    assert language_from_filename(Path("data.tsv")) is None


def test_real_panx_files(panx_dir):
    en = read_iob_file(panx_dir / "dev-en.tsv", L)
    assert len(en.tokens) == 10000 and set(en.langs) == {"en"}
    assert all(len(t) == len(g) for t, g in zip(en.tokens, en.tags))
    zh = read_iob_file(panx_dir / "train-zh.tsv", L)
    assert zh.i_after_o > 0  # WikiANN's own noise, accepted
