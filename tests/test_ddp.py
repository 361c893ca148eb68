"""Single-model scale-out: two CPU processes (gloo) under Lightning's DDP train one model.

The script runs ``caloforge.training.train(devices=2, strategy="ddp")`` as ``caloforge train
--devices 2 --strategy ddp`` does: Lightning starts the second rank by running the script again.
Each rank records its final weights, buffers, selection and losses; the test checks that both
ranks end with identical weights (gradient all-reduce; BatchNorm statistics taken from rank 0)
and the same selected checkpoint, that they drew different batches, and that only rank 0 wrote
the run directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPT = textwrap.dedent("""
    import sys
    import lightning as L
    import torch
    from caloforge.data.geometry import Geometry, Layer
    from caloforge.models import GANConfig
    from caloforge.training import train
    from synthetic import make_showers

    torch.set_num_threads(1)

    class Probe(L.Callback):
        def on_train_end(self, trainer, task):
            torch.save({"state": {k: v.clone() for k, v in task.model.state_dict().items()},
                        "best_iteration": task.selection.best_iteration, "best": task.selection.best_chi2_ndf,
                        "history": task.selection.history, "iteration": task.iteration,
                        "losses": task.last_losses, "backend": torch.distributed.get_backend(),
                        "world_size": trainer.world_size}, f"rank{trainer.global_rank}.pt")

    if __name__ == "__main__":
        geometry = Geometry((Layer(0, (0.0, 1.0, 2.0, 4.0), 2), Layer(5, (0.0, 2.0, 5.0), 1)), name="tiny")
        data = make_showers(geometry, 600, seed=1)
        config = GANConfig(noise_dim=4, generator_layers=(16, 16, 16), critic_layers=(16, 16, 16), batch_size=64,
                           critic_steps=2)
        result = train(data, "gan", config, "run", max_iterations=40, checkpoint_every=10, devices=2,
                       strategy="ddp", progress=False, callbacks=[Probe()])
        print("rank-result", result.ranges[0].iterations, result.ranges[0].best_iteration, result.chi2_ndf)
""")


@pytest.mark.slow
def test_two_cpu_processes_end_with_identical_weights_and_selection(tmp_path):
    (tmp_path / "ddp_run.py").write_text(SCRIPT)
    tests = str(Path(__file__).resolve().parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
           "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(key, None)
    done = subprocess.run([sys.executable, "ddp_run.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert all(r["backend"] == "gloo" and r["world_size"] == 2 for r in ranks)
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == 40  # each rank does every iteration
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    assert state0.keys() == state1.keys() and any("running_mean" in k for k in state0)
    assert all(torch.equal(state0[k], state1[k]) for k in state0)  # weights and BatchNorm buffers
    assert ranks[0]["best_iteration"] == ranks[1]["best_iteration"] >= 0
    rows = [[(h["iteration"], h["chi2_ndf"], h["best_chi2_ndf"]) for h in r["history"]] for r in ranks]
    assert ranks[0]["best"] == ranks[1]["best"] and rows[0] == rows[1]
    assert [row[0] for row in rows[0]] == [0, 10, 20, 30, 40]  # the untrained model and every 10 iterations
    assert ranks[0]["losses"] != ranks[1]["losses"]  # different batches on each rank
    # Rank 0 wrote the run; its bundle holds the selected checkpoint, whose weights the final ones are not
    # necessarily, but the recorded selection is the one both ranks hold.
    import json

    bundle = json.loads((tmp_path / "run" / "bundle" / "bundle.json").read_text())
    assert bundle["validation"]["iteration"] == ranks[0]["best_iteration"]
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("rank-result")]
    assert len(lines) == 2 and all(line[1:3] == ["40", str(ranks[0]["best_iteration"])] for line in lines)
    assert sorted(line[3] == "nan" for line in lines) == [False, True]  # only rank 0 evaluates the final bundle
