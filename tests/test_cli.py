"""The command line as a user runs it: real subprocesses, exit codes, messages."""

import json

import pytest
import yaml

from conftest import tiny_raw, xdray


def test_config_prints_the_resolved_config():
    result = xdray("config", "experiments/quickstart.yaml", "--set", "student.hidden_size=123")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["student"]["hidden_size"] == 123
    assert resolved["data"]["labelled"]["source"] == "synthetic"


@pytest.mark.parametrize("args, fragment", [
    (["--set", "student.hiden_size=3"], "student.hiden_size: unknown key (did you mean 'student.hidden_size'?)"),
    (["--set", "student.hidden_size=-3"], "student.hidden_size: must be > 0"),
    (["--set", "oops"], "expected KEY=VALUE"),
])
def test_bad_input_exits_2_with_one_clear_line(args, fragment):
    result = xdray("teacher", "experiments/quickstart.yaml", *args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_experiment_file(tmp_path):
    result = xdray("run", tmp_path / "missing.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr


def test_bad_data_file_exits_2_and_leaves_no_teacher(tmp_path, write_experiment):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train-en.tsv").write_text("John\tB-PER\nsaid\tO\n\nMary\tB_PER\n", encoding="utf-8")
    (corpus / "dev-en.tsv").write_text("John\tB-PER\n", encoding="utf-8")
    path = write_experiment(tiny_raw(data__labelled={"source": "iob", "path": "corpus", "languages": ["en"]}))
    result = xdray("teacher", path, "--out", tmp_path / "run")
    assert result.returncode == 2
    assert "train-en.tsv:4: unknown tag 'B_PER'" in result.stderr
    assert not (tmp_path / "run" / "teacher").exists()


@pytest.mark.slow
def test_quickstart_runs_end_to_end(tmp_path, ray_local):
    """The README's main command: every stage of experiments/quickstart.yaml, then predict."""
    import csv

    address = ray_local.get_runtime_context().gcs_address
    run = tmp_path / "quickstart"
    result = xdray("run", "experiments/quickstart.yaml", "--out", run, env={"RAY_ADDRESS": address})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "4 trials, 4 done" in result.stdout
    report = run / "report"
    with (report / "frontier.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["embedding_dim"], r["hidden_size"]) for r in rows} == {("32", "32"), ("32", "64"), ("64", "32"),
                                                                     ("64", "64")}
    assert len(rows) == 16 and all(float(r["compression"]) > 1 for r in rows)
    for name in ("frontier.md", "f1_vs_compression.png", "f1_vs_speedup.png"):
        assert (report / name).stat().st_size > 0
    assert {p.name for p in (report / "tensorboard").iterdir()} == {r["trial_id"] for r in rows} | {"teacher",
                                                                                                "frontier"}
    chosen = json.loads((report / "recommended.json").read_text())["trial_id"]
    assert chosen, "the quickstart's students keep 95% of its teacher"
    exported = run / "export" / chosen
    tagged = xdray("predict", "--model", exported, input_text="Anna Schmidt lebt in Berlin.\n")
    assert tagged.returncode == 0, tagged.stderr
    record = json.loads(tagged.stdout)
    assert record["text"] == "Anna Schmidt lebt in Berlin."
    assert all(record["text"][e["start"]:e["end"]] == e["text"] for e in record["entities"])
