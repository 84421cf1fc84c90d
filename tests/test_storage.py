"""Run directories on storage reached through pyarrow filesystems. Offline, a file:// "bucket"
with XDRAY_STAGE_FILE_URIS=1 takes the same path an s3:// or gs:// URI takes: stages work in a
local copy and meet only through storage."""

import pytest

from xdray.core import store as storage


@pytest.fixture
def staged(monkeypatch):
    monkeypatch.setenv("XDRAY_STAGE_FILE_URIS", "1")


def test_push_and_pull_round_trip(tmp_path, staged):
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}/run"
    assert storage.is_remote(uri) and not storage.is_remote(str(tmp_path))
    one = tmp_path / "node-a"
    storage.attach(one, uri)
    (one / "teacher").mkdir()
    (one / "teacher" / "model.safetensors").write_bytes(b"weights")
    (one / "teacher" / "sub").mkdir()
    (one / "teacher" / "sub" / "x.json").write_text("{}")
    (one / "config.yaml").write_text("name: run\n")
    storage.push(one, "teacher")
    storage.push(one, "config.yaml")
    assert (bucket / "run" / "teacher" / storage.COMPLETE).exists()

    two = tmp_path / "node-b"
    storage.attach(two, uri)
    assert storage.pull(two, "teacher") and storage.pull(two, "config.yaml")
    assert (two / "teacher" / "model.safetensors").read_bytes() == b"weights"
    assert (two / "teacher" / "sub" / "x.json").exists() and not (two / "teacher" / storage.COMPLETE).exists()
    assert not storage.pull(two, "nothing-here")

    # A directory whose push never finished is not taken.
    (bucket / "run" / "trials" / "half").mkdir(parents=True)
    (bucket / "run" / "trials" / "half" / "state.json").write_text("{}")
    assert not storage.pull(two, "trials/half")
    # refresh replaces a stale local copy.
    (one / "teacher" / "model.safetensors").write_bytes(b"newer")
    storage.push(one, "teacher")
    assert storage.pull(two, "teacher", refresh=True)
    assert (two / "teacher" / "model.safetensors").read_bytes() == b"newer"


def test_local_paths_are_used_in_place(tmp_path):
    assert storage.remote_of(tmp_path) is None
    storage.push(tmp_path, "anything")  # no-op
    assert not storage.pull(tmp_path, "anything")


# The stages meeting only through storage, end to end on two nodes: tests/test_cluster.py.
