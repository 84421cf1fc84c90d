"""The Tune study on the tiny pipeline: trials, caching, resume after the driver is killed,
latency, the report (CSV, Markdown, plots, TensorBoard HParams) and export / predict."""

import io
import json
from pathlib import Path
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from conftest import PANX, REPO, built_raw
from xdray.config import config_from_dict, load_experiment
from xdray.core.errors import XdrayError
from xdray.core.loader import config_to_dict
from xdray.distill.space import SearchSpace, SpaceEntry

FAST_STAGES = [
    {"name": "representation", "loss": "rep", "unfreeze": "all", "max_epochs": 1},
    {"name": "logits", "loss": "logit", "unfreeze": "all", "max_epochs": 1},
    # A random teacher (the fixture's) has nothing to teach: the labels stage is what makes these
    # students learn (dev F1 about 0.6), so the report and the export round trip compare real scores.
    {"name": "labels", "loss": "ce", "unfreeze": "all", "max_epochs": 6, "patience": 6, "lr_high": 0.02,
     "batch_size": 8},
]
GRID = SearchSpace((SpaceEntry("student.hidden_size", "grid_search", (8, 16)),))


def study_raw() -> dict:
    raw = built_raw()
    raw.update(distill={"stages": FAST_STAGES}, student={"embedding_dim": 16, "hidden_size": 16},
               search={"cpus_per_trial": 1, "max_concurrent_trials": 1}, eval={"batch_sizes": [1, 8]})
    return raw


def copy_run(tiny_built, run):
    """A run directory holding the fixture's teacher and transfer set (so the stages are cached)."""
    source = tiny_built[2].path.parent
    shutil.copytree(source / "teacher", run / "teacher")
    shutil.copytree(source / "transfer", run / "transfer")


@pytest.fixture(scope="module")
def study(tiny_built, tmp_path_factory):
    """(cfg, run_dir, results, seconds): a 2-trial study run once for this module."""
    from xdray.distill.keys import transfer_key
    from xdray.distill.tuning import run_tune_study
    from xdray.pipeline import study_settings

    from xdray.config import dump_config, with_labels
    from xdray.core.rundir import save_run_config

    base, data, teacher, transfer = tiny_built
    cfg = with_labels(config_from_dict({**study_raw(), "base_dir": base.base_dir}), data.labels)
    run = tmp_path_factory.mktemp("study") / "run"
    copy_run(tiny_built, run)
    save_run_config(run, dump_config(cfg))  # as `xdray run` leaves it: export reads it
    started = time.time()
    results = run_tune_study(study_settings(cfg), GRID, run, run / "teacher", {transfer_key(cfg): run / "transfer" / transfer.path.name})
    return cfg, run, results, time.time() - started


def test_tune_adds_no_tensorboard_runs_of_its_own(study):
    """Tune's automatic loggers would add a run per trial with empty hyperparameters and metrics."""
    _, run, _, _ = study
    assert (run / "tune").is_dir()
    assert not list((run / "tune").rglob("events.out.tfevents.*"))
    assert not list((run / "tune").rglob("progress.csv"))


def test_every_grid_point_is_a_finished_trial(study):
    cfg, run, results, _ = study
    assert [r.status for r in results] == ["done", "done"]
    assert sorted(r.params["student.hidden_size"] for r in results) == [8, 16]
    index = json.loads((run / "trials" / "index.json").read_text())
    assert index["space"] == ["student.hidden_size"] and len(index["trials"]) == 2
    for r in results:
        trial = run / "trials" / r.key
        metrics = json.loads((trial / "metrics.json").read_text())
        assert r.key.startswith(f"E16-H{r.params['student.hidden_size']}-")
        assert metrics["params"] > 0 and 0.3 < metrics["dev"]["f1_mean"] <= 1, "the students learn"
        assert set(metrics["forms"]) == {"torch-int8", "onnx", "onnx-int8"}, "every form scored by its trial"
        assert metrics["forms"]["torch-int8"]["size_bytes"] < metrics["size_bytes"]
        assert metrics["forms"]["onnx-int8"]["size_bytes"] < metrics["forms"]["onnx"]["size_bytes"]
        for name in ("model.safetensors", "student.onnx", "student.int8.onnx"):
            assert (trial / "student" / name).exists()
        assert json.loads((trial / "checkpoint" / "state.json").read_text())["done"] == len(FAST_STAGES)
    assert list((run / "tune").glob("experiment_state-*.json")), "Tune's records, for --resume"


def test_a_second_study_reuses_finished_trials(study):
    from xdray.distill.keys import transfer_key
    from xdray.distill.tuning import run_tune_study
    from xdray.pipeline import study_settings

    cfg, run, results, first_seconds = study
    stamps = {r.key: (run / "trials" / r.key / "metrics.json").stat().st_mtime_ns for r in results}
    main_index = (run / "trials" / "index.json").read_bytes()
    again = run_tune_study(study_settings(cfg), GRID, run, run / "teacher", {transfer_key(cfg): next((run / "transfer").iterdir())},
                      study="ablation")
    assert [r.key for r in again] == [r.key for r in results]
    assert {r.key: (run / "trials" / r.key / "metrics.json").stat().st_mtime_ns for r in again} == stamps
    # a named study (another space file) keeps its own index; the experiment's own is untouched
    assert (run / "trials" / "index.json").read_bytes() == main_index
    assert len(json.loads((run / "studies" / "ablation" / "index.json").read_text())["trials"]) == 2


def test_study_names_follow_the_space_file(tmp_path):
    from xdray.pipeline import study_name
    from xdray.config import load_experiment

    cfg = load_experiment(REPO / "experiments" / "panx_minilm_en.yaml")
    assert study_name(cfg, None) is None
    assert study_name(cfg, str(REPO / "experiments" / "spaces" / "minilm_grid.yaml")) is None
    assert study_name(cfg, "experiments/spaces/minilm_stages.yaml") == "minilm_stages"


def test_trial_keys_follow_training_settings_only(study):
    from xdray.distill.keys import trial_key
    from xdray.pipeline import trial_config

    cfg = study[0]
    base = config_to_dict(cfg)
    key = trial_key(trial_config(base, {}))
    assert trial_key(trial_config(base, {"eval.latency_runs": 50, "search.cpus_per_trial": 2})) == key
    assert trial_key(trial_config(base, {"student.dropout": 0.3})) != key
    assert trial_key(trial_config(base, {"seed": 1})) != key
    assert trial_key(trial_config(base, {"student.rep_projection": "linear"})) != key


def test_trial_keys_survive_new_settings():
    """The key the English MiniLM study's E100-H200 trained under before student.rep_projection
    existed: a setting added later (keys.ADDED_SETTINGS) must not orphan trials of existing runs."""
    from xdray.config import with_labels
    from xdray.data.schema import WIKIANN_LABELS
    from xdray.distill.keys import trial_key
    from xdray.pipeline import labelled_data

    cfg = load_experiment(REPO / "experiments" / "panx_minilm_en.yaml")
    # The key hashes the labels a run resolves (source: iob keeps WikiANN's order where it has no list)
    if PANX.is_dir():
        cfg = labelled_data(cfg)[0]  # its path, ../../shared/data/panx, is PANX
        assert cfg.data.labels == WIKIANN_LABELS
    else:
        cfg = with_labels(cfg, WIKIANN_LABELS)
    assert trial_key(cfg) == "E100-H200-b7d3c04e"


def test_transfer_variants_one_per_transfer_setting(study, tmp_path):
    from xdray.core.errors import ConfigError
    from xdray.distill.keys import transfer_key
    from xdray.pipeline import transfer_variants

    cfg = study[0]
    space = SearchSpace((SpaceEntry("transfer.layer", "grid_search", (-1, -2)),
                         SpaceEntry("student.hidden_size", "grid_search", (8, 16))), path="s.yaml")
    variants = transfer_variants(cfg, space)
    assert [v.transfer.layer for v in variants] == [-1, -2]
    assert len({transfer_key(v) for v in variants}) == 2
    assert len(transfer_variants(cfg, GRID)) == 1
    with pytest.raises(ConfigError, match="s.yaml: teacher.finetune.lr: the data and the teacher are built once"):
        transfer_variants(cfg, SearchSpace((SpaceEntry("teacher.finetune.lr", "grid_search", (1e-3,)),), path="s.yaml"))
    with pytest.raises(ConfigError, match="s.yaml: transfer.max_sentences: transfer settings need grid_search"):
        transfer_variants(cfg, SearchSpace((SpaceEntry("transfer.max_sentences", "randint", (10, 20)),), path="s.yaml"))


def test_stage_plans_read_as_short_names():
    from xdray.distill.space import describe

    plan = [{"name": "r", "loss": "rep"}, {"name": "l", "loss": "logit", "unfreeze": "gradual"},
            {"name": "c", "loss": "ce", "unfreeze": "gradual"}]
    assert describe(plan) == "rep>logit*>ce*"
    assert describe(100) == 100 and describe("svd") == "svd"


def xdray(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "xdray", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, cwd=REPO,
                            start_new_session=True)


@pytest.mark.slow
def test_resume_after_the_driver_is_killed_runs_only_unfinished_trials(tiny_built, ray_local, tmp_path, study, capsys,
                                                                       caplog):
    address = ray_local.get_runtime_context().gcs_address
    run = tmp_path / "run"
    copy_run(tiny_built, run)
    raw = study_raw()
    raw["distill"]["stages"][2]["max_epochs"] = 6  # long enough to kill the driver inside trial 2
    raw["distill"]["stages"][2]["patience"] = 6
    (tmp_path / "space.yaml").write_text("student.hidden_size: {grid_search: [8, 16]}\n")
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(raw))
    args = ["tune", tmp_path / "exp.yaml", "--space", tmp_path / "space.yaml", "--out", run]
    driver = xdray(*args, env={"RAY_ADDRESS": address})
    deadline = time.time() + 300
    def recorded_by_tune() -> list[str]:
        """Tune's names of the trials whose result.json's last line says done."""
        results = (run / "studies" / "space" / "tune").glob("*/result.json")
        return [p.parent.name.split("-")[0] for p in results
                if p.stat().st_size and '"done": true' in p.read_text().strip().splitlines()[-1]]

    # a trial finished in xdray's records and in Tune's (a kill between the two would leave Tune a
    # finished trial without its result.json)
    while not (list((run / "trials").glob("*/metrics.json")) and recorded_by_tune()):
        assert driver.poll() is None, driver.stdout.read()[-3000:]
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.2)
    (finished_in_tune,) = recorded_by_tune()
    os.killpg(driver.pid, signal.SIGKILL)  # only the driver this test started
    driver.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (run / "trials").glob("*/metrics.json")}
    assert len(finished) == 1, "the kill should land while the second trial is unfinished"
    assert not (run / "studies" / "space" / "report").exists()

    # The resumed driver: this process (on the same cluster), another one than the killed driver.
    # Ray's loggers do not propagate to the root logger, nor write to the stderr capsys sees: the
    # test listens on "ray" itself.
    from xdray.cli import main

    capsys.readouterr()
    ray_logger = logging.getLogger("ray")
    ray_logger.addHandler(caplog.handler)
    try:
        code = main([*map(str, args), "--resume"])
    finally:
        ray_logger.removeHandler(caplog.handler)
    printed = capsys.readouterr()
    assert code == 0, (printed.out + printed.err)[-4000:]
    assert "2 trials, 2 done" in printed.out
    # Tune keeps result.json (the study's closing analysis reads it) for the trial that finished
    # before the kill; the interrupted one's, Tune's restore may not find (Ray 2.60)
    logged = caplog.text + printed.err
    assert f"Could not fetch metrics for {finished_in_tune}:" not in logged, "Tune's closing analysis lost a result.json"
    after = {p.parent.name: p.stat().st_mtime_ns for p in (run / "trials").glob("*/metrics.json")}
    assert len(after) == 2
    for key, stamp in finished.items():
        assert after[key] == stamp, "a finished trial was trained again"
    # --space names the study after the file: its report goes beside, not over, the main one
    assert (run / "studies" / "space" / "report" / "frontier.csv").exists() and not (run / "report").exists()
    # and its Tune records, resumed above, beside it: another study's run would neither wipe nor resume them
    assert list((run / "studies" / "space" / "tune").glob("experiment_state-*.json")) and not (run / "tune").exists()


# ----------------------------------------------------------------------------- latency and report


@pytest.fixture(scope="module")
def report(study, tiny_built):
    from xdray.pipeline import report as run_report

    cfg, run, results, _ = study
    path, rows = run_report(cfg, run, tiny_built[1], run / "teacher")
    latency = json.loads((run / "eval" / "latency.json").read_text())
    return cfg, run, results, latency, path, rows


def test_latency_times_every_model_on_the_same_batches(report):
    from xdray.core.records import read_latency

    cfg, run, results, latency, _, _ = report
    names = {"teacher"} | {r.key + suffix for r in results for suffix in ("", "+int8", "+onnx", "+onnx-int8")}
    assert set(latency["latency_ms"]) == names
    for name in names:
        assert set(latency["latency_ms"][name]) == {"1", "8"} and all(v > 0 for v in latency["latency_ms"][name].values())
    assert latency["params"]["teacher"] > max(latency["params"][r.key] for r in results)
    assert read_latency(run / "eval" / "latency.json").ms(results[0].key + "+onnx", 8) == \
        latency["latency_ms"][results[0].key + "+onnx"]["8"], "batch sizes read back as ints"


def test_frontier_csv_and_markdown(report):
    import csv

    cfg, run, results, latency, path, rows = report
    with (path / "frontier.csv").open() as handle:
        table = list(csv.DictReader(handle))
    required = {"trial_id", "embedding_dim", "hidden_size", "params", "compression", "latency_ms_b1", "speedup_b1",
                "latency_ms_b8", "speedup_b8", "f1_mean", "f1_std", "f1_micro", "retention", "pareto", "int8",
                "runtime", "serve"}
    assert required <= set(table[0])
    assert len(table) == 8 and sum(row["int8"] == "True" for row in table) == 4
    assert sum(row["runtime"] == "onnx" for row in table) == 4
    teacher = json.loads((run / "teacher" / "metrics.json").read_text())
    for row in table:
        key = row["trial_id"].split("+")[0]
        metrics = json.loads((run / "trials" / key / "metrics.json").read_text())
        form = row["runtime"] + ("-int8" if row["int8"] == "True" else "")
        scores = metrics if form == "torch" else metrics["forms"][form]
        assert float(row["f1_mean"]) == pytest.approx(scores["dev"]["f1_mean"], abs=1e-4)
        assert int(row["params"]) == metrics["params"]
        assert float(row["compression"]) == pytest.approx(latency["params"]["teacher"] / metrics["params"], abs=0.01)
        assert float(row["retention"]) == pytest.approx(scores["dev"]["f1_mean"] / teacher["dev"]["f1_mean"], abs=1e-4)
        assert float(row["speedup_b8"]) == pytest.approx(
            latency["latency_ms"]["teacher"]["8"] / latency["latency_ms"][row["trial_id"]]["8"], rel=0.01)
    assert any(row["pareto"] == "True" for row in table)
    text = (path / "frontier.md").read_text()
    assert "| trial_id |" in text and "Serving cost" in text
    assert all(row["trial_id"] in text for row in table)


def test_plots_are_pngs_that_label_every_point_and_ring_the_served_student(report, tmp_path):
    from xdray.frontier.render import plot

    path, rows = report[4], report[5]
    for name in ("f1_vs_compression.png", "f1_vs_speedup.png"):
        data = (path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    figure = plot(rows, "compression", "compression", 0.5, 0.9, tmp_path / "p.png", "t")
    (ax,) = figure.axes
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == len(rows) and sum(" onnx" in t for t in labels) == 2 * len({r["trial_id"].split("+")[0] for r in rows})
    served = next(r for r in rows if r["serve"])
    assert any(label.startswith("recommended, served as") for label in ax.get_legend_handles_labels()[1])
    assert served["trial_id"].split("+")[0] in path.joinpath("frontier.md").read_text().split("## Serving cost")[1]
    cost = path.joinpath("frontier.md").read_text().split("## Serving cost")[1]
    assert "USD per device hour" in cost and "| cost_USD |" in cost and "(served: " in cost


def _events(path, **guidance):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"scalars": 0, **guidance})
    events.Reload()
    return events


def _hparams_data(events):
    from tensorboard.plugins.hparams import plugin_data_pb2

    return [plugin_data_pb2.HParamsPluginData.FromString(c) for c in events.PluginTagToContent("hparams").values()]


def test_tensorboard_view_is_one_run_per_trial_and_form(report):
    cfg, run, _, _, path, rows = report
    board = path / "tensorboard"
    assert {p.name for p in board.iterdir()} == {r["trial_id"] for r in rows} | {"teacher", "frontier"}
    history = {r["trial_id"]: json.loads((run / "trials" / r["trial_id"] / "metrics.json").read_text())["history"]
               for r in rows if "+" not in r["trial_id"]}
    for row in rows:
        events = _events(board / row["trial_id"])
        start = next(d.session_start_info for d in _hparams_data(events) if d.HasField("session_start_info"))
        assert start.group_name == row["trial_id"]
        assert start.hparams["hidden_size"].number_value == row["hidden_size"]
        assert start.hparams["format"].string_value == row["runtime"] + ("-int8" if row["int8"] else "")
        key = row["trial_id"].split("+")[0]
        dev = events.Scalars("dev/f1_mean")
        assert dev[-1].value == pytest.approx(row["f1_mean"], abs=1e-4) and dev[-1].step == len(history[key])
        assert events.Scalars("frontier/params")[0].value == row["params"]
        assert events.Scalars("frontier/retention")[0].step == len(history[key])
        tags = events.Tags()["scalars"]
        assert not [t for t in tags if t.startswith("hparam")]
        curves = [t for t in tags if t.endswith("/train_loss")]
        if "+" in row["trial_id"]:  # a deployable form: its session, no second copy of the curves
            assert len(dev) == 1 and not curves
        else:  # step = epoch of the sub-stage, one point per epoch it ran; dev F1 per sub-stage
            assert len(dev) == len(history[key]) and len(curves) == len(history[key])
            for sub in history[key]:
                assert [e.step for e in events.Scalars(f"{sub['substage']}/train_loss")] == \
                    list(range(1, sub["epochs"] + 1))
            assert {f"dev/f1_{lang}" for lang in cfg.data.labelled.languages} <= set(tags)


def test_tensorboard_experiment_declares_the_grid_as_columns(report):
    cfg, run, _, _, path, rows = report
    frontier = _events(path / "tensorboard" / "frontier", images=0)
    experiment = next(d.experiment for d in _hparams_data(frontier) if d.HasField("experiment"))
    assert [h.name for h in experiment.hparam_infos] == ["embedding_dim", "hidden_size", "format"]
    formats = {v.string_value for v in experiment.hparam_infos[2].domain_discrete.values}
    assert formats == {"torch", "torch-int8", "onnx", "onnx-int8"}
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert {"dev/f1_mean", "dev/f1_std", "frontier/params", "frontier/compression", "frontier/retention",
            "frontier/pareto", "frontier/recommended", "frontier/latency_ms_b8", "frontier/speedup_b8"} <= set(metrics)
    assert not [m for m in metrics if m.endswith(("train_loss", "heldout_loss", "/lr"))]
    assert {"frontier/f1_vs_compression", "frontier/f1_vs_speedup"} <= set(frontier.Tags()["images"])
    teacher = json.loads((run / "teacher" / "metrics.json").read_text())
    curve = _events(path / "tensorboard" / "teacher").Scalars("teacher/dev_f1_mean")
    assert max(e.value for e in curve) == pytest.approx(teacher["dev"]["f1_mean"], abs=1e-6)
    # per fine-tuning epoch; this fixture's teacher is not fine-tuned: its one model at step 1
    assert [e.step for e in curve] == ([h["epoch"] for h in teacher.get("history", [])] or [1])
    assert not list((run / "trials").rglob("events.out.tfevents.*")), "trials keep their live events"


def test_report_recommends_the_smallest_student_that_keeps_enough(report):
    from xdray.frontier.frontier import recommend

    cfg, run, _, _, path, rows = report
    chosen = json.loads((path / "recommended.json").read_text())["trial_id"]
    fp32 = [r for r in rows if r["runtime"] == "torch" and not r["int8"]]
    best = recommend(fp32, cfg.report.min_retention)
    assert best is not None and chosen == fp32[best]["trial_id"]
    assert min(r["f1_mean"] for r in fp32) > 0.3, "a recommendation between students that learnt"
    assert sum(r["recommended"] for r in rows) == (chosen is not None)
    # served as the fastest of its forms at batch 8 that keeps its dev F1 within 0.002
    serve = json.loads((path / "recommended.json").read_text())["serve"]
    forms = [r for r in rows if r["trial_id"].split("+")[0] == chosen]
    assert len(forms) == 4 and serve in {r["trial_id"] for r in forms}
    ok = [r for r in forms if r["f1_mean"] >= fp32[best]["f1_mean"] - 0.002]
    assert serve == min(ok, key=lambda r: r["latency_ms_b8"])["trial_id"]


# ----------------------------------------------------------------------------- export and predict


def cli(capsys, monkeypatch, *args, stdin: str | None = None) -> tuple[int, str, str]:
    """`xdray ARGS` in this process (xdray.cli.main; stdin given as text): (exit code, stdout,
    stderr). `xdray predict` as a separate process, stdin to stdout, is test_job_submit's."""
    from xdray.cli import main

    capsys.readouterr()
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_export_and_predict_round_trip(report, tiny_built, tmp_path, capsys, monkeypatch):
    from xdray.core.metrics import f1_report
    from xdray.serve.export import export_student
    from xdray.distill.onnx import ONNX_FILE, ONNX_INT8_FILE
    from xdray.serve.tagger import Tagger

    def tag(path, sentences, runtime="auto"):
        return Tagger(path, runtime=runtime).tag_sentences(sentences)[0]
    from xdray.serve.text import entities as decode, split_words
    from xdray.distill.saved import load_student

    cfg, run, results, _, _, rows = report
    key = results[1].key
    exported = export_student(run, cfg, key)
    assert exported == run / "export" / key
    assert (exported / ONNX_FILE).stat().st_size > 0 and (exported / ONNX_INT8_FILE).stat().st_size > 0
    scored = json.loads((run / "trials" / key / "metrics.json").read_text())["forms"]
    for name in (ONNX_FILE, ONNX_INT8_FILE):  # export ships the very graphs the trial scored, with their scores
        assert (exported / name).read_bytes() == (run / "trials" / key / "student" / name).read_bytes()
    shipped = json.loads((exported / "metrics.json").read_text())
    assert shipped["served"]["dev"] == scored["onnx"]["dev"] and shipped["forms"]["onnx-int8"]["file"] == ONNX_INT8_FILE
    student, vocab, labels, tokenizer = load_student(exported)

    # Tagging the dev sentences word by word reproduces the trial's dev F1.
    dev = tiny_built[1].splits["dev"]
    tags = tag(exported, [list(t) for t in dev["tokens"]])
    names = list(labels)
    gold = [np.array(s) for s in dev["ner_tags"]]
    predicted = [np.array([names.index(t) for t in sentence]) for sentence in tags]
    score = f1_report(gold, predicted, dev["lang"], names)
    metrics = json.loads((run / "trials" / key / "metrics.json").read_text())
    assert score["f1_mean"] == pytest.approx(metrics["dev"]["f1_mean"], abs=1e-9)
    assert score["f1_mean"] > 0.3, "an all-O tagger would reproduce 0.0 too"
    assert tag(exported, [list(t) for t in dev["tokens"]], runtime="torch") == tags, "ONNX fp32 tags as eager does"
    int8 = tag(exported, [list(t) for t in dev["tokens"]], runtime="onnx-int8")
    int8_f1 = f1_report(gold, [np.array([names.index(t) for t in s]) for s in int8], dev["lang"], names)["f1_mean"]
    assert abs(int8_f1 - score["f1_mean"]) < 0.05

    text = tmp_path / "input.txt"
    text.write_text("John lives in Berlin\n\n  Maria   Petrova  \n", encoding="utf-8")
    code, out, err = cli(capsys, monkeypatch, "predict", "--model", exported, "--pretokenized", text)
    assert code == 0, err
    blocks = [b.splitlines() for b in out.strip("\n").split("\n\n")]
    assert [[line.split("\t")[0] for line in b] for b in blocks] == [["John", "lives", "in", "Berlin"],
                                                                     ["Maria", "Petrova"]]
    assert all(line.split("\t")[1] in names for b in blocks for line in b)
    code, out, _ = cli(capsys, monkeypatch, "predict", "--model", exported, "--pretokenized", "--format", "json",
                       stdin="Maria Petrova\n")
    record = json.loads(out)
    assert record["tokens"] == ["Maria", "Petrova"] and len(record["tags"]) == 2

    # Raw text: one JSON line per input line, entities agreeing with the word tags of the same words.
    lines = [" ".join(t) for t in dev["tokens"][:40]] + ["", "Paris, said Anna."]
    code, out, err = cli(capsys, monkeypatch, "predict", "--model", exported, stdin="\n".join(lines) + "\n")
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == lines
    same = 0
    for r, words, word_tags in zip(records, dev["tokens"][:40], tags):
        for e in r["entities"]:
            assert r["text"][e["start"]:e["end"]] == e["text"] and e["label"] in ("PER", "ORG", "LOC")
            assert 0 < e["score"] <= 1
        split = split_words(r["text"])
        if [w.text for w in split] == list(words):  # the splitter gave back PAN-X's words
            same += 1
            expected = decode(r["text"], split, word_tags, [1.0] * len(split))
            assert [(e["text"], e["label"]) for e in r["entities"]] == [(e["text"], e["label"]) for e in expected]
    assert same >= 30, "PAN-X words joined by spaces split back into the same words"
    assert records[-2] == {"text": "", "entities": []}, "an empty line gets its own (empty) record"
    code, _, err = cli(capsys, monkeypatch, "predict", "--model", exported, "--format", "json", stdin="x\n")
    assert code == 2 and "--pretokenized" in err


def test_python_api_and_model_card(report, tiny_built):
    """xdray.load on the export or the run directory; call, pipe and tag_words agree with the
    CLI's tags; the model card states what was measured on the ONNX graph that ships."""
    import xdray
    from xdray.serve.export import export_student
    from xdray.serve.tagger import Tagger

    cfg, run, results, _, _, rows = report
    key = results[1].key
    exported = export_student(run, cfg, key)
    tagger = xdray.load(str(exported))
    assert tagger.path == exported and tagger.labels == list(tiny_built[0].data.labels)
    dev = tiny_built[1].splits["dev"]
    words = [list(t) for t in dev["tokens"][:20]]
    assert [tagger.tag_words(w) for w in words] == Tagger(exported).tag_sentences(words)[0]
    lines = [" ".join(w) for w in words]
    piped = list(tagger.pipe(iter(lines), batch_size=7))
    assert piped == [tagger(line) for line in lines] == [r["entities"] for r in tagger.entities(lines)]

    metrics = json.loads((exported / "metrics.json").read_text())
    served = metrics["served"]
    assert served["runtime"] == "onnx" and set(served) >= {"dev", "test"}
    assert served["dev"]["f1_mean"] == pytest.approx(metrics["dev"]["f1_mean"], abs=0.01), "ONNX fp32 scores as eager"
    card = tagger.card
    assert card.metadata["language"] == sorted(tiny_built[1].languages) and "license" in card.metadata
    (result,) = [r for r in card.metadata["model-index"][0]["results"] if r["dataset"]["split"] == "validation"]
    assert result["metrics"][0]["value"] == round(served["dev"]["f1_mean"], 4)
    assert "## Results" in card.text and "`score`" in card.text and f"--trial {key}" in card.text
    for lang, f1 in served["test"]["per_language"].items():
        assert f"| {lang} | " in card.text and f"{f1:.4f}" in card.text
    assert (exported / "experiment.yaml").exists()

    recommended = json.loads((run / "report" / "recommended.json").read_text())["trial_id"]
    from_run = xdray.load(run)
    assert from_run.path.name in (recommended, "student") and recommended in str(from_run.path)
    with pytest.raises(XdrayError, match=r"not a saved student .*student folder\(s\): name one, e.g. --model .*export/E"):
        xdray.load(run / "export")  # the parent of the exports: the error points into it
    with pytest.raises(XdrayError, match="does not exist"):
        xdray.load(run / "nope")


def test_export_errors_name_what_is_wrong(report, tmp_path, capsys, monkeypatch):
    run = report[1]
    code, _, err = cli(capsys, monkeypatch, "export", run, "--trial", "E1-H1-nope")
    assert code == 2 and "--trial E1-H1-nope: no trained student" in err
    assert "trained: E16-H16-" in err and ", E16-H8-" in err, "it lists what can be exported"
    code, _, err = cli(capsys, monkeypatch, "predict", "--model", tmp_path, stdin="x\n")
    assert code == 2 and "not a saved student" in err
    code, _, err = cli(capsys, monkeypatch, "predict", "--model", run, "--out", tmp_path / "o", stdin="x\n")
    assert code == 2 and "--out: only with --ray" in err


def test_report_export_predict_take_the_experiment_file_or_the_run(report, tmp_path, capsys, monkeypatch):
    """One command shape: the experiment file (with --out where the run is not in its default
    place) or the run directory; anything else is an error that names the command that works."""
    import yaml

    run = report[1]
    raw = yaml.safe_load((run / "config.yaml").read_text())  # the run's resolved experiment ...
    raw.pop("base_dir")
    experiment = tmp_path / "exp.yaml"  # ... as an experiment file
    experiment.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)  # its default run directory, runs/<name>, is here and empty
    code, out, err = cli(capsys, monkeypatch, "export", experiment, "--out", run)
    assert code == 0 and f"export {run / 'export'}" in out, err
    exported = Path(out.split()[1].rstrip(":"))
    code, out, err = cli(capsys, monkeypatch, "predict", "--model", experiment, stdin="Paris\n")
    assert code == 2 and "no run here yet" in err, "its default run directory holds no run"
    code, _, err = cli(capsys, monkeypatch, "export", exported)
    assert code == 2 and "an exported student, not a run directory" in err and str(run) in err
    code, _, err = cli(capsys, monkeypatch, "report", run, "--out", tmp_path)
    assert code == 2 and "goes with an experiment file" in err
    code, _, err = cli(capsys, monkeypatch, "report", experiment, "--out", tmp_path / "elsewhere")
    assert code == 2 and "no run here yet" in err and f"xdray run {experiment}" in err
    code, _, err = cli(capsys, monkeypatch, "export", run.parent)
    assert code == 2 and f"xdray export {run}" in err, "the folder holding the run points into it"


def test_mbert_reference_has_mbert_size():
    """Built on the meta device: the architecture's 177M parameters counted, none allocated or
    initialised (that took seconds and 700 MB)."""
    import torch

    from xdray.core.metrics import count_parameters
    from xdray.frontier.latency import reference_teacher

    with torch.device("meta"):
        model = reference_teacher("mbert-base", num_labels=7)
    assert next(model.parameters()).is_meta
    assert round(count_parameters(model) / 1e6, 1) == 177.3


@pytest.mark.slow
def test_a_killed_trial_is_retried_from_its_checkpoint(tiny_built, study, tmp_path):
    """The trial's process dies after sub-stage 2; Tune retries it; it continues from its
    checkpoint and ends with exactly the metrics of the uninterrupted trial."""
    from xdray.core import faults
    from xdray.distill.keys import transfer_key, trial_key
    from xdray.distill.tuning import run_tune_study
    from xdray.pipeline import study_settings, trial_config

    cfg, first_run, results, _ = study
    run = tmp_path / "run"
    copy_run(tiny_built, run)
    grid = SearchSpace((SpaceEntry("student.hidden_size", "grid_search", (8,)),))
    key = trial_key(trial_config(config_to_dict(cfg), {"student.hidden_size": 8}))
    faults.arm(run / "trials" / f"{key}.partial", "substage-2")
    (done,) = run_tune_study(study_settings(cfg), grid, run, run / "teacher", {transfer_key(cfg): next((run / "transfer").iterdir())})
    assert done.status == "done" and done.key == key
    assert not (run / "trials" / key / faults.MARKER).exists(), "the fault was injected"
    assert not (run / "trials" / f"{key}.partial").exists(), "the finished trial was published"
    resumed = json.loads((run / "trials" / key / "metrics.json").read_text())
    whole = json.loads((first_run / "trials" / key / "metrics.json").read_text())
    assert resumed["dev"] == whole["dev"] and resumed["test"] == whole["test"]
    assert [h["substage"] for h in resumed["history"]] == [h["substage"] for h in whole["history"]]
