"""`xdray doctor`: what it finds, and that each finding names the fix."""

from conftest import tiny_raw
from xdray.doctor import check_data, check_ray, check_storage, render, run_checks


def test_a_good_experiment_passes(write_experiment, tmp_path):
    checks = run_checks(str(write_experiment(tiny_raw())), str(tmp_path / "run"))
    assert {c.name for c in checks} >= {"python", "torch", "ray", "gpus", "config", "storage", "teacher", "data"}
    assert all(c.ok for c in checks), render(checks)
    assert not (tmp_path / "run").exists(), "checking leaves no empty run directory behind"


def test_findings_name_the_problem_and_the_fix(write_experiment, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    storage = check_storage(blocked / "run", None)
    assert not storage.ok and "cannot write" in storage.detail and "--out" in storage.fix

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train-en.tsv").write_text("John\tB_PERSON\n", encoding="utf-8")
    (corpus / "dev-en.tsv").write_text("John\tB-PER\n", encoding="utf-8")
    from xdray.config import load_experiment

    cfg = load_experiment(write_experiment(tiny_raw(data__labelled={"source": "iob", "path": "corpus",
                                                                    "languages": ["en"]})))
    data = check_data(cfg)
    assert not data.ok and "train-en.tsv:1: 'B_PERSON' in the tag column" in data.detail

    ray = check_ray("127.0.0.1:1")  # nothing listens there
    assert not ray.ok and "cannot connect" in ray.detail and "ray status" in ray.fix


def test_a_teacher_that_cannot_be_found_is_reported(write_experiment, tmp_path):
    from xdray.config import load_experiment
    from xdray.doctor import check_teacher

    missing = load_experiment(write_experiment(tiny_raw(teacher={"init": "pretrained",
                                                                 "model": "package:xdray_no_such_package"})))
    check = check_teacher(missing)
    assert not check.ok and "package:xdray_no_such_package is not installed" in check.detail and "pip" in check.fix
    folder = load_experiment(write_experiment(tiny_raw(teacher={"init": "finetuned", "model": "./nowhere"})))
    check = check_teacher(folder)
    assert not check.ok and "nowhere" in check.detail
    assert check_teacher(load_experiment(write_experiment(tiny_raw()))).ok


def test_cli_exits_1_on_a_bad_config(write_experiment, capsys):
    """`xdray doctor` through xdray.cli.main in this process (its exit code is what main returns:
    `python -m xdray` exits with it, test_cli's subprocesses show)."""
    from xdray.cli import main

    path = write_experiment(tiny_raw(student={"hiden_size": 3}))
    capsys.readouterr()
    assert main(["doctor", str(path)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL config" in printed and "student.hiden_size: unknown key" in printed
