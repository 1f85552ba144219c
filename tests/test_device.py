"""Training's arithmetic: bf16 autocast on CUDA and on CPUs with native bf16, fp32 elsewhere or when asked."""
from __future__ import annotations

import pytest
import torch

import digitlab
from digitlab import device as dev


def _bf16_inside(ctx) -> bool:
    with ctx:
        return torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_cpus_bf16_and_fp32_always_wins(monkeypatch, native):
    monkeypatch.setattr(dev, "native_bf16_cpu", lambda: native)
    cpu = torch.device("cpu")
    assert _bf16_inside(dev.autocast(cpu, "auto", training=True)) is native
    assert _bf16_inside(dev.autocast(cpu, "fp32", training=True)) is False
    assert _bf16_inside(dev.autocast(cpu, "bf16", training=True)) is True
    assert _bf16_inside(dev.autocast(cpu)) is False  # inference on a CPU: fp32 whatever the CPU


def test_native_bf16_reads_the_cpu_flags(monkeypatch, tmp_path):
    info = tmp_path / "cpuinfo"
    for flags, expected in (("fpu avx2 fma avx512f", False), ("fpu avx512f avx512_bf16 avx512_vnni", True), ("amx_bf16 amx_tile", True)):
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(dev, "Path", lambda _p, _info=info: _info)
        dev.native_bf16_cpu.cache_clear()
        assert dev.native_bf16_cpu() is expected, flags
    dev.native_bf16_cpu.cache_clear()


def test_a_bf16_training_learns_as_well_as_fp32_and_records_its_precision(tmp_path):
    runs = {p: digitlab.train(model="lenet5", dataset="mnist-sample", epochs=2, precision=p, out=str(tmp_path / p),
                              verbose=False, seed=0) for p in ("fp32", "bf16")}
    assert runs["bf16"].config.precision == "bf16"
    assert runs["bf16"].test_accuracy > 0.6  # a broken bf16 path would stay near 10%
    assert abs(runs["bf16"].test_accuracy - runs["fp32"].test_accuracy) < 0.03  # same data, seed and steps
