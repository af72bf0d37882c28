"""Scale: 10,000 virtual clients with 100 per round vs 100 clients with 100 per round.

Both runs train seed_cnn on Fashion-MNIST (offline IDX files) with the same client work
(6-7 training examples per client, 1 local epoch) and the same server test set (3,500
images): the 10,000-client run uses all 70,000 images (5% held out for the server); the
100-client run uses a truncated copy of the IDX files written to a temp folder
(665 pool + 3,500 test). Only the number of idle clients differs. Peak memory is the RSS
summed over the whole process tree (driver, raylet, GCS, workers), sampled every 0.5 s;
shared pages (Ray's object store) count once per process, so it is an upper bound.

    python benchmarks/scale.py [--rounds 3] [--clients 10000] [--per-round 100]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import struct
import sys
import tempfile
from pathlib import Path

from _common import ROOT, round_seconds, run_fedft

sys.path.insert(0, str(ROOT))


def truncated_fashion_mnist(total: int) -> Path:
    """The first `total` Fashion-MNIST images (train file, then t10k) as IDX files in a temp folder."""
    import numpy as np

    from fedft.data.images import FASHION_MNIST_DIR, _find, _read_idx

    folder = Path(tempfile.mkdtemp(prefix="fmnist-"))
    src, left = Path(FASHION_MNIST_DIR), total
    for prefix in ("train", "t10k"):
        x, y = _read_idx(_find(src, f"{prefix}-images-idx3-ubyte")), _read_idx(_find(src, f"{prefix}-labels-idx1-ubyte"))
        n = max(1, min(left, len(y)))
        left -= n
        for name, arr in ((f"{prefix}-images-idx3-ubyte", x[:n]), (f"{prefix}-labels-idx1-ubyte", y[:n])):
            header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (folder / name).write_bytes(header + np.ascontiguousarray(arr).tobytes())
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    args = parser.parse_args(argv)
    common = ["data.name=fashion-mnist", "data.val_fraction=0.0", "train.local_epochs=1", "train.batch_size=32",
              f"simulation.rounds={args.rounds}", f"simulation.clients_per_round={args.per_round}", "simulation.device=cpu"]
    test = 3500
    pool = 70_000 - test
    small_pool = pool * args.per_round // args.clients
    small_dir = truncated_fashion_mnist(small_pool + test + 1)  # +1: train file then t10k gets >= 1
    cases = {
        f"{args.clients} clients": common + [f"partition.num_clients={args.clients}", f"data.test_fraction={test / 70_000:.6f}"],
        f"{args.per_round} clients": common + [f"partition.num_clients={args.per_round}", f"data.path={small_dir}",
                                               f"data.test_fraction={test / (small_pool + test + 1):.6f}"],
    }
    results = {}
    for name, overrides in cases.items():
        r = run_fedft(ROOT / "simulations" / "quickstart.toml", overrides)
        rounds = round_seconds(r["rows"])
        results[name] = dict(r, round=statistics.median(rounds), handshake=float(r["rows"][0]["wall_seconds"]))
        print(f"{name}: rounds {['%.2f' % s for s in rounds]}, round 0 (eval + nodes) {results[name]['handshake']:.1f} s", flush=True)
    print()
    print(f"{'run':<16}{'peak RSS (tree)':>17}{'start->round 0':>16}{'round 0':>9}{'round (median)':>16}{'total':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['peak_rss'] / 2**30:>14.2f} GiB{r['first_row_at'] or float('nan'):>14.1f} s{r['handshake']:>7.1f} s"
              f"{r['round']:>14.2f} s{r['wall']:>7.1f} s")
    big, small = results.values()
    print(f"\nratio {args.clients}/{args.per_round} clients: per-round {big['round'] / small['round']:.2f}x "
          
          f"peak RSS {big['peak_rss'] / small['peak_rss']:.2f}x ({big['peak_rss'] / 2**30:.2f} GiB; target < 4 GiB, per-round <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
