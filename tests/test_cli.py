"""The command line as a user runs it: real subprocesses, exit codes, messages (one data error in
this process, through the same entry point)."""

import subprocess
import sys

import pytest
import yaml

from conftest import REPO, tiny_raw, xdray


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


@pytest.mark.parametrize("command", ["teacher", "transfer", "train", "tune", "run"])
def test_a_config_error_comes_before_the_heavy_imports(command):
    """A typo in the config fails in a second: torch, transformers and datasets are not loaded yet."""
    code = ("import sys; from xdray.cli import main; rc = main([%r, 'experiments/quickstart.yaml', '--set', "
            "'student.hiden_size=3']); print(rc, sorted({'torch', 'transformers', 'datasets', 'ray'} & set(sys.modules)))"
            % command)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.split("\n")[0] == "2 []", result.stdout + result.stderr[-2000:]
    assert "student.hiden_size: unknown key" in result.stderr


def test_missing_experiment_file(tmp_path):
    result = xdray("run", tmp_path / "missing.yaml")
    assert result.returncode == 2 and "file not found" in result.stderr


def test_bad_data_file_exits_2_and_leaves_no_teacher(tmp_path, write_experiment, capsys):
    """In this process (xdray.cli.main): a data error takes the same way out as the config errors
    above, which show it as a process's exit code; test_bad_input has every kind of bad file."""
    from xdray.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train-en.tsv").write_text("John\tB-PER\nsaid\tO\n\nMary\tB_PER\n", encoding="utf-8")
    (corpus / "dev-en.tsv").write_text("John\tB-PER\n", encoding="utf-8")
    path = write_experiment(tiny_raw(data__labelled={"source": "iob", "path": "corpus", "languages": ["en"]}))
    assert main(["teacher", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train-en.tsv:4: 'B_PER' in the tag column (token<TAB>TAG) is not a tag" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "teacher").exists()



def _parsers(parser, path=("xdray",)):
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_command_and_flag_says_what_it_does_and_its_default(capsys):
    from xdray.cli import build_parser, main

    commands = list(_parsers(build_parser()))
    assert len(commands) > 15
    for path, parser in commands:
        assert parser.description, f"{' '.join(path)} has no description"
        for action in parser._actions:
            assert action.help, f"{' '.join(path)} {action.option_strings or action.dest}: no help"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "HTTP port (default: 8000)" in text and "characters a text (more: 413) (default: 20000)" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "frontier, and the chosen student exported for predict, Python and Ray Serve." in top
    assert "xdray run experiments/quickstart.yaml" in top
