"""``finder.log_to``: a real range test written to TensorBoard event files and to a local MLflow store, read
back with their own readers (TensorBoard's ``EventAccumulator``, ``MlflowClient``)."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import textwrap

import pytest

from lr_finder import tracking

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


def _same(read, expected):
    """Equal as float32 (how both stores keep a scalar), NaN equal to NaN."""
    assert len(read) == len(expected)
    for got, want in zip(read, expected, strict=True):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-6), (got, want)


def _read_tensorboard(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _check_tensorboard(acc, finder):
    history, result = finder.history, finder.suggestion()
    for name in ("lr", "loss", "raw_loss"):
        events = acc.Scalars(f"lr_finder/{name}")
        assert [e.step for e in events] == list(range(history.num_steps))
        _same([e.value for e in events], getattr(history, name))
    assert result.lr is not None and result.low is not None and result.high is not None
    for name, value in (("suggested_lr", result.lr), ("optimal_low", result.low), ("optimal_high", result.high)):
        _same([e.value for e in acc.Scalars(f"lr_finder/{name}")], [value])
    (image,) = acc.Images("lr_finder/plot")
    assert image.encoded_image_string.startswith(b"\x89PNG") and (image.width, image.height) == (800, 500)
    (text,) = acc.Tensors("lr_finder/suggestion/text_summary")  # add_text's tag: a string tensor
    written = text.tensor_proto.string_val[0].decode()
    assert written == tracking.suggestion_text(result)
    assert f"{result.lr:.3E}" in written and f"{result.low:.3E} to {result.high:.3E}" in written


def test_tensorboard_summary_writer(finder, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    finder.log_to(writer)
    writer.close()
    _check_tensorboard(_read_tensorboard(tmp_path), finder)


def test_tensorboard_log_folder(finder, tmp_path):
    finder.log_to(tmp_path / "runs" / "lr")  # a writer opened there and closed
    _check_tensorboard(_read_tensorboard(tmp_path / "runs" / "lr"), finder)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """A local file store in ``tmp_path`` (MLflow 3 keeps it behind this switch; sqlite needs SQLAlchemy, which
    mlflow-skinny lacks)."""
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def _check_mlflow(client, run_id, finder):
    history, result = finder.history, finder.suggestion()
    for name in ("lr", "loss", "raw_loss"):
        points = sorted(client.get_metric_history(run_id, f"lr_finder/{name}"), key=lambda m: m.step)
        assert [m.step for m in points] == list(range(history.num_steps))
        _same([m.value for m in points], getattr(history, name))
    for name, value in (("suggested_lr", result.lr), ("optimal_low", result.low), ("optimal_high", result.high)):
        _same([m.value for m in client.get_metric_history(run_id, f"lr_finder/{name}")], [value])
    listed = {a.path: a for a in client.list_artifacts(run_id, "lr_finder")}
    assert set(listed) == {"lr_finder/plot.png", "lr_finder/suggestion.md"}
    assert listed["lr_finder/plot.png"].file_size > 10_000
    text = client.download_artifacts(run_id, "lr_finder/suggestion.md")
    with open(text) as fh:
        assert fh.read() == tracking.suggestion_text(result)


def test_mlflow_client_and_run_id(finder, mlflow_store):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_store)
    run = client.create_run(client.create_experiment("lr"))
    finder.log_to(client, run_id=run.info.run_id)
    _check_mlflow(client, run.info.run_id, finder)
    with pytest.raises(ValueError, match="run_id="):
        finder.log_to(client)


def test_mlflow_active_run(finder, mlflow_store):
    import mlflow

    with pytest.raises(ValueError, match="active run"):
        finder.log_to("mlflow")
    with mlflow.start_run() as run:
        finder.log_to("mlflow")
    _check_mlflow(mlflow.MlflowClient(), run.info.run_id, finder)


def test_other_targets_are_refused_by_name(finder):
    with pytest.raises(TypeError, match="SummaryWriter.*MlflowClient.*not int"):
        finder.log_to(3)


def test_a_missing_dependency_is_named_in_one_line(finder, tmp_path, monkeypatch):
    """Each extra in one line: the import made to fail the way an uninstalled package does."""
    for module in ("mlflow", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # ``import`` raises ImportError, as when not installed
    with pytest.raises(ImportError) as exc:
        finder.log_to("mlflow")
    assert str(exc.value) == "log_to() needs mlflow: pip install 'lr-finder[mlflow]'"
    with pytest.raises(ImportError) as exc:
        finder.log_to(tmp_path)
    assert str(exc.value) == "log_to() needs tensorboard: pip install 'lr-finder[tensorboard]'"
    assert not list(tmp_path.iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_only_rank_0_writes(finder, tmp_path):
    """A real two-process gloo group: this process is rank 1 (it writes nothing), a child is rank 0."""
    import torch.distributed as dist

    url = f"tcp://127.0.0.1:{_free_port()}"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import datetime, torch.distributed as dist
        dist.init_process_group("gloo", init_method="{url}", rank=0, world_size=2,
                                timeout=datetime.timedelta(seconds=30))
        dist.barrier()
        dist.destroy_process_group()
    """)])
    import datetime

    dist.init_process_group("gloo", init_method=url, rank=1, world_size=2, timeout=datetime.timedelta(seconds=30))
    try:
        finder.log_to(tmp_path / "rank1")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    assert child.wait(timeout=60) == 0
    assert not (tmp_path / "rank1").exists()
