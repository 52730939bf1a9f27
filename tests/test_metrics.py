"""Prometheus metrics: what a process serves, its ports, the targets file, and a real Prometheus
server that finds a running 2-process job by itself and computes the recording rules."""

from __future__ import annotations

import json
import re

import pytest
import torch
from conftest import ONE_NODE, free_port, stopped_by_signal, tensorboard_scalars, torchrun
from local_cluster import config_for_test, install_or_skip, poll, prometheus_query, scrape, script, start

from data_shards.errors import UserError
from dist_train.distributed import Topology
from dist_train.metrics import MetricsConfig, ProgressBarSink, PrometheusSink, start_tensorboard
from dist_train.metrics.prometheus import TARGETS_FILE, targets_files
from dist_train.metrics.tensorboard import TensorBoardSink
from dist_train.trainers.gan.step import GanStep
from launcher.paths import PROJECT_ROOT

LABELS = {"job": "s2s", "node": "n1", "rank": "0", "replica": "0", "run": "r"}


def topology(local_rank=0, local_world_size=1) -> Topology:
    return Topology(
        rank=local_rank,
        world_size=local_world_size,
        local_rank=local_rank,
        local_world_size=local_world_size,
        node_rank=0,
        num_nodes=1,
        backend="gloo",
        devices=("cpu",),
    )


def value(sink: PrometheusSink, name: str, **extra) -> float | None:
    return sink.registry.get_sample_value(name, {**LABELS, **extra})


def test_steps_are_counted_and_timed():
    sink = PrometheusSink(LABELS, torch.device("cpu"))
    step = {"source_words": 100, "target_words": 120, "samples": 4, "learning_rate": 0.7}
    phases = {"data_wait": 0.01, "compute": 0.2, "communication": 0.003, "step": 0.213}
    sink.observe_step(1, step, phases)
    sink.observe_step(2, {**step, "skipped_steps": 1, "corrupt_samples": 3}, phases)
    assert value(sink, "dist_train_source_words_total") == 200
    assert value(sink, "dist_train_target_words_total") == 240
    assert value(sink, "dist_train_samples_total") == 8
    assert value(sink, "dist_train_steps_total") == 2
    assert value(sink, "dist_train_skipped_steps_total") == 1
    assert value(sink, "dist_train_corrupt_samples_total") == 3
    assert value(sink, "dist_train_learning_rate") == 0.7
    sink.write(2, {"loss": 2.25, "grad_norm": 1.5, "words_per_s": 10.0, "epoch": 0.1})  # a logging interval
    assert value(sink, "dist_train_loss") == 2.25 and value(sink, "dist_train_grad_norm") == 1.5
    assert value(sink, "dist_train_step_seconds_count") == 2
    assert value(sink, "dist_train_step_phase_seconds_sum", phase="compute") == pytest.approx(0.4)
    assert value(sink, "dist_train_memory_bytes", kind="rss") > 10e6
    sink.note_resume(2, 1, 7)  # resumed on 1 replica from 2 at step 7
    assert value(sink, "dist_train_resumed", from_replicas="2", on_replicas="1", at_step="7") == 1


def test_without_a_terminal_the_progress_bar_prints_plain_lines(capsys):
    bar = ProgressBarSink(total=30, initial=0, shown={"loss": "{:.2f}"}, desc="s2s", every_s=0.0)
    for step in (10, 20, 30):
        bar.write(step, {"loss": 5.0 - step / 10})
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert [re.match(r"s2s: +(\d+)%", line).group(1) for line in lines] == ["33", "67", "100"]
    assert "\r" not in "".join(lines) and lines[-1].endswith("loss=2.00]")


def test_gan_steps_export_images_and_both_losses():
    sink = PrometheusSink({**LABELS, "job": "gan"}, torch.device("cpu"))
    figures = [torch.tensor(x) for x in (0.6, 0.7, 0.3, 1.2)]  # on the device in training
    sink.observe_step(1, GanStep(100, *figures, 0.1).values(), {})
    sink.observe_step(2, GanStep(100, *figures[:3], None, 0.1).values(), {})  # a D-only step (k > 1)
    # a step's values are host numbers: a device tensor among them would make every step wait for the device
    assert all(type(v) in (int, float) for v in GanStep(100, *figures, 0.1).values().values())
    sink.write(2, {"d_loss": 0.5, "g_loss": 1.2, "d_real": 0.8, "d_fake": 0.2, "images_per_s": 9.0})
    gan = {"job": "gan"}
    assert value(sink, "dist_train_images_total", **gan) == 200 == value(sink, "dist_train_samples_total", **gan)
    assert value(sink, "dist_train_d_loss", **gan) == 0.5 and value(sink, "dist_train_g_loss", **gan) == 1.2
    assert value(sink, "dist_train_d_real", **gan) == 0.8 and value(sink, "dist_train_d_fake", **gan) == 0.2


def test_port_is_base_plus_local_rank_and_a_taken_one_is_said():
    base = free_port()
    cfg = MetricsConfig(port=base, bind="127.0.0.1")
    first = PrometheusSink(LABELS, torch.device("cpu"))
    assert first.serve(cfg, topology(local_rank=0, local_world_size=2)) == (base, "")
    try:
        assert "dist_train_steps_total" in scrape(f"127.0.0.1:{base}")
        second = PrometheusSink(LABELS, torch.device("cpu"))
        port, note = second.serve(cfg, topology())  # local rank 0 of another job: base is taken
        second.close()
        assert port == base + 1 and note == f"port {base} was taken, serving on {base + 1}"
        with pytest.raises(UserError, match=f"metrics port {base} on 127.0.0.1 is taken"):
            PrometheusSink(LABELS, torch.device("cpu")).serve(
                MetricsConfig(port=base, bind="127.0.0.1", on_port_taken="error"), topology()
            )
    finally:
        first.close()


@pytest.mark.slow
def test_two_processes_serve_their_own_metrics_and_list_them(newstest_small_shards, tmp_path):
    run_dir = tmp_path / "runs" / "s2s-run"
    metrics = (f"metrics.port={free_port()}", "metrics.bind=127.0.0.1", "threads=1", "log_every=5")
    job = torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=run_dir, steps=2000, overrides=metrics)
    try:
        listed = poll(lambda: targets(run_dir), timeout=120, what="the targets file")
        assert [e["labels"]["rank"] for e in listed] == ["0", "1"]
        assert {e["labels"]["job"] for e in listed} == {"s2s"} and listed[0]["labels"]["run"] == "s2s-run"
        pages = poll(lambda: all_counting(listed), timeout=120, what="both processes counting steps")
        for entry, page in zip(listed, pages):
            rank = entry["labels"]["rank"]
            for name in ("source_words_total", "target_words_total", "samples_total", "steps_total"):
                assert re.search(rf'dist_train_{name}{{[^}}]*rank="{rank}"[^}}]*}} [1-9]', page), (name, rank)
            for phase in ("data_wait", "compute", "communication", "gradient_allreduce"):
                assert f'phase="{phase}"' in page, phase
        assert json.loads(targets_files(run_dir)[1].read_text()) == listed  # beside the run dir, the same
    finally:
        job.terminate()  # SIGTERM: the job checkpoints and stops
    assert stopped_by_signal(job)["stopped_by_signal"] == "SIGTERM"
    assert json.loads((run_dir / TARGETS_FILE).read_text()) == []  # over: nothing left to scrape


def targets(run_dir) -> list[dict] | None:
    path = run_dir / TARGETS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def all_counting(listed: list[dict]) -> list[str] | None:
    pages = [scrape(entry["targets"][0]) for entry in listed]
    return pages if all(re.search(r"dist_train_steps_total{[^}]*} [1-9]", page) for page in pages) else None


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A real Prometheus server with the shipped config, reading targets from a test folder."""
    base = tmp_path_factory.mktemp("prometheus")
    env = {"BASE": str(PROJECT_ROOT / "runs" / "local-prometheus")}
    install_or_skip("prometheus.sh", **env)
    runs = base / "runs"
    config = config_for_test(
        PROJECT_ROOT / "cluster" / "prometheus" / "prometheus.yml", base, f"{runs}/prometheus-targets/*.json"
    )
    port = free_port()
    start("prometheus.sh", **env, CONFIG=str(config), PORT=str(port))
    yield port, runs
    script("prometheus.sh", "stop", **env)


@pytest.mark.slow
def test_a_real_prometheus_finds_a_running_job_and_records_its_throughput(prometheus, newstest_small_shards):
    port, runs = prometheus
    metrics = (f"metrics.port={free_port()}", "metrics.bind=127.0.0.1", "threads=1", "log_every=5")
    job = torchrun(*ONE_NODE, data=newstest_small_shards, run_dir=runs / "s2s-watched", steps=2000, overrides=metrics)
    try:
        up = poll(lambda: prometheus_query(port, 'up{job="s2s"} == 1'), timeout=120, what="both targets up")
        poll(lambda: len(prometheus_query(port, 'up{job="s2s"} == 1')) == 2, timeout=60, what="the second target")
        assert {r["metric"]["rank"] for r in prometheus_query(port, 'up{job="s2s"}')} == {"0", "1"}, up
        rate = poll(
            lambda: prometheus_query(port, 'job:dist_train_words_per_second:rate1m{job="s2s", run="s2s-watched"}'),
            timeout=120,
            what="the recorded words/s",
        )
        assert float(rate[0]["value"][1]) > 0
        words = "sum(rate(dist_train_source_words_total[15s]) + rate(dist_train_target_words_total[15s]))"
        assert float(poll(lambda: prometheus_query(port, words), timeout=60, what="words/s")[0]["value"][1]) > 0
        phases = poll(
            lambda: prometheus_query(port, "job:dist_train_step_phase_seconds:mean1m"), timeout=60, what="phases"
        )
        assert {"data_wait", "compute", "communication"} <= {r["metric"]["phase"] for r in phases}
        answered = {title: prometheus_query(port, expr.replace("$run", ".*")) for title, expr in dashboard_queries()}
        for title in ("Words/s per node (source + target)", "Step time by phase (mean over 1 min)", "Learning rate"):
            assert answered[title], title  # the s2s panels show this job
    finally:
        job.terminate()
    assert stopped_by_signal(job)["stopped_by_signal"] == "SIGTERM"


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads((PROJECT_ROOT / "cluster" / "grafana" / "dist-train.json").read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_tensorboard_hides_what_an_interrupted_attempt_wrote_after_the_checkpoint_and_can_be_off(tmp_path, monkeypatch):
    first = TensorBoardSink(tmp_path)
    for step in range(1, 11):
        first.write(step, {"loss": float(step), "planned_steps": 10, "attempt_began": True})
    first.close()  # stopped at step 10; its checkpoint was step 6
    resumed = TensorBoardSink(tmp_path, begins_at=6)
    for step in (7, 8):
        resumed.write(step, {"loss": 100.0 + step})
    resumed.close()
    assert tensorboard_scalars(tmp_path / "tensorboard") == {
        "train/loss": [(s, float(s)) for s in range(1, 7)] + [(7, 107.0), (8, 108.0)]
    }
    one = topology()
    assert start_tensorboard(MetricsConfig(tensorboard="off"), one, tmp_path / "off", begins_at=0) == []
    assert not (tmp_path / "off").exists()
    monkeypatch.setattr("dist_train.metrics.tensorboard.tensorboard_installed", lambda: False)
    assert start_tensorboard(MetricsConfig(), one, tmp_path / "auto", begins_at=0) == []  # auto: quietly none
    with pytest.raises(UserError, match="pip install '.\\[tensorboard\\]'"):
        start_tensorboard(MetricsConfig(tensorboard="on"), one, tmp_path / "on", begins_at=0)
