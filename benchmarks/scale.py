"""Scale: 10,000 virtual clients with 100 per round vs 100 clients with 100 per round.

Both runs train seed_cnn on Fashion-MNIST (offline IDX files) with the same client work
(6-7 training examples per client, 1 local epoch) and the same server test set (3,500
images): the 10,000-client run uses all 70,000 images (5% held out for the server); the
100-client run uses a truncated copy of the IDX files written to a temp folder
(665 pool + 3,500 test). Only the number of idle clients differs. Peak memory is the RSS
summed over the whole process tree (driver, raylet, GCS, workers), sampled every 0.5 s;
shared pages (Ray's object store, what forked local workers share with the driver) count
once per process, so it is an upper bound; the peak PSS beside it counts each shared page once.

What the idle clients themselves cost is measured apart, on the real objects: Flower's
per-node records (tracemalloc around the engine's own registration functions) and
fedft's per-client shard indices.

    python benchmarks/scale.py [--rounds 3] [--clients 10000] [--per-round 100] [--small N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
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

    from fedft.ml.data.images import FASHION_MNIST_DIR, _find, _read_idx

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


def engine_bytes_per_node(small: int, large: int) -> float:
    """What Flower's simulation engine keeps per virtual client in the driver (node record
    in the in-memory LinkState, DeprecatedRunInfoStore with its Context), measured with
    tracemalloc around the engine's own registration functions, per extra node."""
    import gc
    import tracemalloc

    from flwr.server.superlink.fleet.vce.vce_api import _register_node_info_stores, _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.superlink.federation import NoOpFederationManager

    def traced(n: int) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(simulation=True), ObjectStoreFactory())
            factory.state()
            before = tracemalloc.get_traced_memory()[0]
            stores = _register_node_info_stores(_register_nodes(n, factory), Run.create_empty(1), None)
            after = tracemalloc.get_traced_memory()[0]
            del stores
            return after - before
        finally:
            tracemalloc.stop()

    return (traced(large) - traced(small)) / (large - small)


def shard_bytes_per_client(overrides: list[str]) -> float:
    """fedft's own record per client, in the driver and in every worker: its shard's
    train/validation index arrays."""
    from fedft.api import prepare
    from fedft.ml.data import federated_data_for

    cfg = prepare(ROOT / "simulations" / "quickstart.toml", overrides)
    clients = federated_data_for(cfg).clients
    return sum(sys.getsizeof(t) + sys.getsizeof(v) + sys.getsizeof((t, v)) for t, v in clients) / len(clients)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--per-round", type=int, default=100)
    parser.add_argument("--small", type=int, default=0, help="clients in the comparison run (default: --per-round, all sampled each round)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="added to both runs, e.g. simulation.evaluate_every=4")
    args = parser.parse_args(argv)
    common = ["data.name=fashion-mnist", "data.val_fraction=0.0", "train.local_epochs=1", "train.batch_size=32",
              f"simulation.rounds={args.rounds}", f"simulation.clients_per_round={args.per_round}", "simulation.device=cpu", *args.overrides]
    test = 3500
    pool = 70_000 - test
    small_n = args.small or args.per_round
    small_pool = pool * small_n // args.clients
    small_dir = truncated_fashion_mnist(small_pool + test + 1)  # +1: train file then t10k gets >= 1
    cases = {
        f"{args.clients} clients": common + [f"partition.num_clients={args.clients}", f"data.test_fraction={test / 70_000:.6f}"],
        f"{small_n} clients": common + [f"partition.num_clients={small_n}", f"data.path={small_dir}",
                                               f"data.test_fraction={test / (small_pool + test + 1):.6f}"],
    }
    results = {}
    for name, overrides in cases.items():
        r = run_fedft(ROOT / "simulations" / "quickstart.toml", overrides)
        rounds = round_seconds(r["rows"])
        results[name] = dict(r, round=statistics.median(rounds), handshake=float(r["rows"][0]["wall_seconds"]))
        print(f"{name}: rounds {['%.2f' % s for s in rounds]}, round 0 (eval + nodes) {results[name]['handshake']:.1f} s", flush=True)
    print()
    print(f"{'run':<16}{'peak RSS (tree)':>17}{'peak PSS (tree)':>17}{'start->round 0':>16}{'round 0':>9}{'round (median)':>16}{'total':>9}")
    for name, r in results.items():
        print(f"{name:<16}{r['peak_rss'] / 2**30:>14.2f} GiB{r['peak_pss'] / 2**30:>14.2f} GiB{r['first_row_at'] or float('nan'):>14.1f} s{r['handshake']:>7.1f} s"
              f"{r['round']:>14.2f} s{r['wall']:>7.1f} s")
    big, small = results.values()
    per_node, per_shard = engine_bytes_per_node(small_n, args.clients), shard_bytes_per_client(cases[f"{args.clients} clients"])
    print(f"\nper idle client: {per_node:.0f} B in Flower's engine (driver) + {per_shard:.0f} B of shard indices (driver and each worker); "
          f"x {args.clients - small_n} more clients = {(per_node + per_shard) * (args.clients - small_n) / 2**20:.1f} MiB")
    print(f"the rest of the peak RSS difference is the {pool:,}-image pool each data-loading process holds vs {small_pool:,} images")
    print(f"ratio {args.clients}/{small_n} clients: per-round {big['round'] / small['round']:.2f}x "
          f"peak RSS {big['peak_rss'] / small['peak_rss']:.2f}x ({big['peak_rss'] / 2**30:.2f} GiB; target < 4 GiB, per-round <= 1.2x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
