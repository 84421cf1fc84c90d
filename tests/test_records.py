"""Run records: a missing record reads as None, a damaged one is an error naming the file; forms
and latency tables read back typed."""

import json

import pytest

from xdray.core.errors import XdrayError
from xdray.core.records import (CorruptRecord, Form, Latency, Recommendation, StudyIndex, TrialResult, read_frontier,
                                read_index, read_json, read_latency, read_metrics, read_recommendation, trial_forms,
                                write_frontier, write_index, write_json, write_recommendation)


@pytest.mark.parametrize("damage", [b'{"dev": {"f1_mean": 0.5', b"\xff\xfe not text", b"[1, 2]", b'{"test": {}}'])
def test_a_damaged_record_is_an_error_naming_it_and_a_missing_one_is_none(tmp_path, damage):
    assert read_metrics(tmp_path) is None
    (tmp_path / "metrics.json").write_bytes(damage)
    with pytest.raises(CorruptRecord, match=r"metrics\.json: damaged run record .*; delete it") as caught:
        read_metrics(tmp_path, "delete it")
    assert isinstance(caught.value, XdrayError), "the CLI's one-line exit 2"


def test_json_round_trip(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2]})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2]}


def test_forms_name_their_rows_and_split_back():
    key = "E64-H32-0b7d31b6"
    names = [form.row_name(key) for form in Form]
    assert names == [key, key + "+int8", key + "+onnx", key + "+onnx-int8"]
    assert [Form.split(n) for n in names] == [(key, form) for form in Form]
    assert [(f.runtime, f.int8) for f in Form] == [("torch", False), ("torch", True), ("onnx", False), ("onnx", True)]
    assert all(Form.of(f.runtime, f.int8) is f for f in Form)
    metrics = {"dev": 1, "forms": {"onnx-int8": {"dev": 4}, "torch-int8": {"dev": 2}}}
    assert [(f, s["dev"]) for f, s in trial_forms(metrics).items()] == [(Form.EAGER, 1), (Form.INT8, 2),
                                                                         (Form.ONNX_INT8, 4)]


def test_latency_batch_sizes_read_back_as_ints(tmp_path):
    latency = Latency("cpu", 2, {"teacher": 10}, {"teacher": {1: 0.5, 32: 4.0}}, {"runs": 20})
    write_json(tmp_path / "latency.json", latency.to_json())
    assert json.loads((tmp_path / "latency.json").read_text())["latency_ms"]["teacher"] == {"1": 0.5, "32": 4.0}
    back = read_latency(tmp_path / "latency.json")
    assert back == latency and back.ms("teacher", 32) == 4.0 and back.ms("teacher", 8) is None
    (tmp_path / "latency.json").write_text(json.dumps({**latency.to_json(), "latency_ms": {"teacher": {"b1": 1}}}))
    with pytest.raises(CorruptRecord, match="latency_ms"):
        read_latency(tmp_path / "latency.json")


def test_index_and_recommendation_round_trip_and_damage(tmp_path):
    index = StudyIndex([TrialResult("K1", {"student.hidden_size": 8}, "done"), TrialResult("K2", {}, "error", "boom")],
                       ["student.hidden_size"])
    write_index(tmp_path / "index.json", index)
    assert read_index(tmp_path / "index.json") == index and index.done == ["K1"]
    (tmp_path / "index.json").write_text(json.dumps({"space": [], "trials": [{"key": "K1"}]}))
    with pytest.raises(CorruptRecord, match="index.json"):
        read_index(tmp_path / "index.json")
    assert read_recommendation(tmp_path) is None
    write_recommendation(tmp_path, Recommendation("K1", {"f1_mean": 0.5}, "K1+onnx"))
    assert read_recommendation(tmp_path) == Recommendation("K1", {"f1_mean": 0.5}, "K1+onnx")
    write_frontier(tmp_path, [{"trial_id": "K1", "f1_mean": 0.5}, {"trial_id": "K1+onnx", "size_mb": 1}])
    assert read_frontier(tmp_path) == [{"trial_id": "K1", "f1_mean": "0.5", "size_mb": ""},
                                       {"trial_id": "K1+onnx", "f1_mean": "", "size_mb": "1"}]


def test_a_damaged_trial_record_stops_the_trial_instead_of_retraining_it(tmp_path):
    from xdray.core.stage import run_stage
    from xdray.distill.trial import trial_stage

    (tmp_path / "trials" / "K").mkdir(parents=True)
    (tmp_path / "trials" / "K" / "metrics.json").write_text('{"dev": ')
    built = []
    stage = trial_stage(None, "trials/K", lambda: built.append(1))
    with pytest.raises(CorruptRecord, match=r"trials/K/metrics\.json"):
        run_stage(tmp_path, stage)
    assert not built and (tmp_path / "trials" / "K" / "metrics.json").read_text() == '{"dev": '


def test_a_damaged_study_index_is_not_no_trials_yet(tmp_path):
    from xdray.distill.tuning import read_index as read_study_index

    with pytest.raises(XdrayError, match="no trials yet"):
        read_study_index(tmp_path)
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / "index.json").write_text("{not json")
    with pytest.raises(CorruptRecord, match="damaged run record"):
        read_study_index(tmp_path)
