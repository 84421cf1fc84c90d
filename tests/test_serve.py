"""Ray Serve: the student on loopback answers concurrent requests exactly as `xdray predict` does,
and bad requests get a 4xx with a message without taking the replica down."""

import json
from pathlib import Path
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from xdray.data.schema import WIKIANN_LABELS

TEXTS = ["Angela Merkel visited Paris, France.", "Der Bundestag tagte in Berlin.", "北京是中国的首都。",
         "", "Москва большая", "राहुल दिल्ली गए"] * 6


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    from xdray.distill.onnx import export_onnx
    from xdray.distill.saved import save_student
    from xdray.distill.student import BiLSTMStudent, StudentSpec
    from xdray.distill.vocab import Vocabulary
    from xdray.serve.text import split_words
    from xdray.teacher.wordpiece import train_wordpiece

    tokenizer = train_wordpiece([[w.text for w in split_words(t)] for t in TEXTS], vocab_size=300)
    vocab = Vocabulary(list(range(len(tokenizer))), len(tokenizer))
    torch.manual_seed(0)
    student = BiLSTMStudent(StudentSpec(len(vocab), 16, 16, 16, len(WIKIANN_LABELS)))
    with torch.no_grad():
        student.output.bias[1::2] += 2.0  # a random student that tags B- often: entities to compare
    directory = tmp_path_factory.mktemp("served")
    save_student(directory, student, vocab, WIKIANN_LABELS, tokenizer, extra={"max_length": 8})
    export_onnx(student, vocab, directory)
    return directory


@pytest.fixture(scope="module")
def served(student_dir, ray_local):
    from ray import serve

    from xdray.core.runtime import free_port
    from xdray.serve.deploy import ServeConfig, start

    url = start(ServeConfig(str(student_dir), port=free_port(), replica_cpus=0.5, max_batch_size=8))
    yield url
    serve.shutdown()


def call(url, body: bytes | None = None, method="POST"):
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_concurrent_requests_get_what_predict_gives(served, student_dir):
    from xdray.serve.tagger import Tagger

    expected = Tagger(student_dir).entities(TEXTS)
    assert sum(len(r["entities"]) for r in expected) > 5, "a test with entities in it"
    assert served.startswith("http://127.0.0.1:")
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda t: call(served + "/predict", json.dumps({"text": t}).encode()), TEXTS))
    assert all(status == 200 for status, _ in answers)
    assert [a for _, a in answers] == expected  # blank texts too: no entities, as predict prints them
    status, many = call(served + "/predict", json.dumps({"texts": TEXTS[:6]}).encode())
    assert status == 200 and many == expected[:6]
    status, unbatched = call(served + "/predict?batching=off", json.dumps({"texts": TEXTS[:6]}).encode())
    assert status == 200 and unbatched == expected[:6]


@pytest.mark.parametrize("body, status, message", [
    (b"not json", 400, "not JSON"),
    (b'{"text": 5}', 400, '"text" must be a string'),
    (b'{"texts": "a"}', 400, '"texts" must be a list'),
    (b"[" * 100000 + b"]" * 100000, 400, "not JSON"),  # nested past Python's recursion limit
    (b'{"text": "\\ud800 Paris"}', 400, "lone surrogate"),
    (b'{"words": ["a"]}', 400, 'expected an object with "text"'),
    (json.dumps({"texts": ["a"] * 300}).encode(), 413, "at most 256"),
    (json.dumps({"text": "a " * 20000}).encode(), 413, "characters"),
])
def test_bad_requests_get_a_4xx_and_the_replica_keeps_serving(served, body, status, message):
    got, answer = call(served + "/predict", body)
    assert got == status and message in answer["error"]
    healthy, health = call(served + "/healthz", method="GET")
    assert healthy == 200 and health["status"] == "ok"
    ok, result = call(served + "/predict", b'{"text": "Paris"}')
    assert ok == 200 and result["text"] == "Paris"


def test_blank_and_empty_requests_are_answered_as_predict_answers_them(served):
    assert call(served + "/predict", b'{"text": "  "}') == (200, {"text": "  ", "entities": []})
    assert call(served + "/predict", b'{"texts": []}') == (200, [])


def test_unknown_routes_say_which_exist(served):
    status, answer = call(served + "/nope", b"{}")
    assert status == 404 and "use POST /predict" in answer["error"]
    status, answer = call(served + "/predict", method="GET")
    assert status == 405 and "use POST /predict" in answer["error"]


def test_the_api_is_described_at_docs(served):
    status, spec = call(served + "/openapi.json", method="GET")
    assert status == 200 and set(spec["paths"]) == {"/predict", "/healthz"}
    predict = spec["paths"]["/predict"]["post"]
    body = predict["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert [sorted(b["properties"]) for b in body] == [["text"], ["texts"]]
    assert {"200", "400", "413"} <= set(predict["responses"])
    assert {"Entity", "Tagged", "Error"} <= set(spec["components"]["schemas"])
    assert "256 texts a request" in spec["info"]["description"]
    with urllib.request.urlopen(served + "/docs", timeout=60) as page:
        assert page.status == 200 and b"swagger" in page.read().lower()


def test_serve_config_names_what_is_wrong(tmp_path):
    from xdray.core.errors import XdrayError
    from xdray.serve.deploy import ServeConfig

    with pytest.raises(XdrayError, match="not a saved student"):
        ServeConfig(str(tmp_path)).check()


def test_predict_on_ray_tags_a_corpus_like_predict(student_dir, ray_local, tmp_path, capsys):
    """Parquet (the default); --format json differs only in Ray Data's writer. In this process, on
    the session's cluster (`xdray predict` as a process of its own is test_job_submit's)."""
    import pyarrow.parquet as pq

    from xdray.cli import main
    from xdray.serve.tagger import Tagger

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n".join(TEXTS[:18]) + "\n", encoding="utf-8")
    (corpus / "b.txt").write_text("\n".join(TEXTS[18:]) + "\n", encoding="utf-8")
    out = tmp_path / "tagged"
    argv = ["predict", "--model", str(student_dir), "--ray", str(corpus), "--out", str(out)]
    assert main([*argv, "--actors", "1"]) == 0, capsys.readouterr().err[-3000:]
    rows = [r for p in sorted(out.glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    expected = Tagger(student_dir).entities(TEXTS)
    assert len(rows) == len(TEXTS)
    spans = lambda r: [(e["text"], e["label"], e["start"], e["end"]) for e in r["entities"]]  # noqa: E731
    got = sorted((r["text"], spans(r), [e["score"] for e in r["entities"]]) for r in rows)
    want = sorted((r["text"], spans(r), [e["score"] for e in r["entities"]]) for r in expected)
    assert [g[:2] for g in got] == [w[:2] for w in want]
    for (_, _, got_scores), (_, _, want_scores) in zip(got, want):
        assert got_scores == pytest.approx(want_scores, abs=2e-4)  # float32 in the file
    where = [(Path(r["path"]).name, r["line"]) for r in rows]
    assert where == [("a.txt", n) for n in range(1, 19)] + [("b.txt", n) for n in range(1, 19)]
    assert [r["text"] for r in rows] == TEXTS
    capsys.readouterr()
    assert main(argv) == 2 and "exists" in capsys.readouterr().err
    (corpus / "c.txt").write_bytes("Paris\nBerlin\n".encode() + b"\xff Rom\n")
    assert main([*argv[:-1], str(tmp_path / "again"), "--actors", "1"]) == 2
    assert f"{corpus / 'c.txt'}:3: not UTF-8" in capsys.readouterr().err
    assert not list(tmp_path.glob("again*")), "nothing half-written is left"
