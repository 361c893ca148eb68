"""Hardware-aware defaults: bf16 only where native and faster, threads from the free cores, plain progress lines."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from caloforge.runtime import hardware
from caloforge.runtime.progress import SILENT, Progress
from caloforge.validation.metrics.classifier import ClassifierConfig, classifier_test

AVX2_ONLY = hardware.CpuInfo("AMD EPYC (test)", 2, frozenset({"avx", "avx2", "fma"}), "AVX2")
AVX512_BF16 = hardware.CpuInfo("Intel Xeon (test)", 2, frozenset({"avx2", "avx512f", "avx512_bf16"}), "AVX512")


@pytest.fixture
def cpu(monkeypatch):
    """Pretend to run on a given CPU; the per-process bf16 calibration is forgotten before and after."""
    def use(info: hardware.CpuInfo) -> None:
        monkeypatch.setattr(hardware, "cpu_info", lambda: info)
        hardware._cpu_bf16_speedup.cache_clear()

    yield use
    hardware._cpu_bf16_speedup.cache_clear()


def test_avx2_cpu_never_uses_bf16_and_never_times_it(cpu, monkeypatch):
    cpu(AVX2_ONLY)

    def no_bf16_timing(dtype=torch.float32, **kwargs):
        if dtype == torch.bfloat16:
            pytest.fail("bf16 was timed on a CPU that emulates it (minutes on an AVX2 machine)")
        return 100.0

    monkeypatch.setattr(hardware, "matmul_gflops", no_bf16_timing)
    assert AVX2_ONLY.vector == "AVX2" and not AVX2_ONLY.bf16_native
    assert hardware.use_bf16("cpu") is False


def test_native_bf16_is_used_only_when_measured_faster(cpu, monkeypatch):
    cpu(AVX512_BF16)
    monkeypatch.setattr(hardware, "matmul_gflops", lambda dtype=torch.float32, **kw: 400.0 if dtype == torch.bfloat16
                        else 190.0)
    assert hardware.use_bf16("cpu") is True
    cpu(AVX512_BF16)  # a native but slow bf16 (e.g. a throttled part): float32
    monkeypatch.setattr(hardware, "matmul_gflops", lambda dtype=torch.float32, **kw: 200.0 if dtype == torch.bfloat16
                        else 190.0)
    assert hardware.use_bf16("cpu") is False


def test_classifier_auto_precision_runs_fp32_where_bf16_is_not_native(cpu):
    cpu(AVX2_ONLY)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 5)), rng.normal(size=(200, 5))
    config = ClassifierConfig(hidden=(8,), max_epochs=1, repeats=1, precision="auto")
    result = classifier_test(x, y, config, seed=0)
    assert result.runs[0].precision == "fp32"


def test_classifier_stops_at_its_wall_clock_budget_and_says_so():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(3000, 50)), rng.normal(0.3, 1.0, size=(3000, 50))
    config = ClassifierConfig(hidden=(256, 256), max_epochs=10_000, repeats=1, batch_size=100, precision="fp32",
                              max_seconds=0.5)
    result = classifier_test(x, y, config, seed=0)
    run = result.runs[0]
    assert run.stopped_by == "budget" and result.budget_exhausted
    assert 1 <= run.epochs_run < 10_000 and run.elapsed_s < 5.0
    assert "stopped by the wall-clock budget" in result.summary()
    assert result.auc > 0.6  # the best epoch so far is used, not an untrained network


def test_recommended_threads_leave_room_for_other_work(cpu, monkeypatch):
    cpu(AVX2_ONLY)  # 2 CPUs
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    stat = {"busy": 0}

    def cpu_times():  # /proc/stat as (busy, total) jiffies; each call advances 100 jiffies per CPU
        stat["busy"] += 1
        tick = stat["busy"] * 100
        return {0: (tick * load[0] // 100, tick), 1: (tick * load[1] // 100, tick), 7: (tick, tick)}  # 7: not ours

    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(hardware, "_cpu_times", cpu_times)
    monkeypatch.setattr(hardware.time, "sleep", lambda s: None)
    load = (5, 10)  # idle
    assert hardware.recommended_threads() == 2
    load = (100, 10)  # another job keeps one core busy
    assert hardware.recommended_threads() == 1
    load = (100, 100)
    assert hardware.recommended_threads() == 1
    monkeypatch.setattr(hardware, "_cpu_times", dict)  # no /proc/stat: the load average
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (1.1, 1.0, 1.0))
    assert hardware.recommended_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's explicit choice wins
    assert hardware.recommended_threads() == 3


def test_machine_summary_names_the_cpu_and_its_speed():
    summary = hardware.machine_summary(min_seconds=0.01)
    line = summary.describe()
    assert summary.cpu_model in line and summary.vector in line and "GFLOP/s" in line
    assert summary.fp32_gflops > 0.1


def test_plain_progress_prints_one_line_per_marked_step_and_throttles_the_rest():
    now = [0.0]
    out = io.StringIO()
    progress = Progress(stream=out, live=False, interval_s=10.0, clock=lambda: now[0])
    with progress.task("classifier", total=3, unit="epochs") as task:
        for epoch in range(1, 4):
            now[0] += 1.0
            task.update(epoch, status=f"acc {0.5 + epoch / 10:.2f}", line=True)
            task.update(epoch, status="mid-epoch")  # routine updates inside the interval print nothing
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("classifier: started")
    assert [line.split("classifier: ")[1].split(" acc")[0] for line in lines[1:4]] == ["1/3 epochs", "2/3 epochs",
                                                                                      "3/3 epochs"]
    assert "ETA 0:00:01" in lines[2]
    assert lines[-1].endswith("classifier: done (3 s, 3/3 epochs, mid-epoch)")
    assert len(lines) == 5
    silent = io.StringIO()
    with Progress(stream=silent, enabled=False).task("x", total=1) as task:
        task.update(1, line=True)
    assert silent.getvalue() == "" and SILENT.enabled is False
