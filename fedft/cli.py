"""`fedft` command line: a thin layer over the Python API.

Bad input prints one line, `fedft: error: <field>: <problem> Fix: <fix>`, and
exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fedft.errors import EXIT_BAD_INPUT, FedftError

if TYPE_CHECKING:
    from fedft.runtime.warm_start import WarmStart


def _add_run_args(p: argparse.ArgumentParser, config_optional: bool = False) -> None:
    if config_optional:
        p.add_argument("config", nargs="?", default=None, help="TOML config, e.g. simulations/quickstart.toml (optional with --resume)")
    else:
        p.add_argument("config", help="TOML config, e.g. simulations/quickstart.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field, e.g. --set train.lr=0.01 (repeatable)")
    p.add_argument("--out", default=None, help="results folder (default: <output.dir>/<name>-<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true", help="show Flower and Ray logs")


def _begin_warm_start(args: argparse.Namespace) -> WarmStart | None:
    """A `fedft.runtime.warm_start.WarmStart` when this is a fresh process (torch not
    imported yet: the `fedft` command) and the config may run on the local backend; else
    None. Forked once the workers' own imports are made: it imports `torch._dynamo` and
    loads the data while this process imports the rest (the engine, the server side)."""
    if "torch" in sys.modules or args.config is None or args.resume is not None:
        return None
    from fedft.config.loading import raw_config, validate

    try:
        raw = raw_config(args.config, args.overrides)
        sim = validate(raw).simulation
    except Exception:  # noqa: BLE001  (not this function's to report: the run says what is wrong)
        return None
    if raw.get("sweep") or (raw.get("compare") or {}).get("arms") or sim.backend == "ray" or sim.ray_address or sim.centralised:
        return None
    if sim.backend == "auto" and (sim.device == "cuda" or sim.client_resources.num_gpus > 0):  # "auto" picks Ray for CUDA clients
        return None
    from fedft.runtime.warm_start import WarmStart  # with it, what both processes need: torch, Flower's client side, fedft's

    return WarmStart.begin()


def cmd_run(args: argparse.Namespace) -> int:
    warm_start = _begin_warm_start(args)
    try:
        return _run_command(args, warm_start)
    finally:
        if warm_start is not None:
            warm_start.close()


def _run_command(args: argparse.Namespace, warm_start: WarmStart | None) -> int:
    from fedft.api import run
    from fedft.jobs.compare import has_arms
    from fedft.jobs.sweep import is_sweep_config

    if args.resume is None and args.config is not None and is_sweep_config(args.config):  # a [sweep] table: run the grid
        return cmd_sweep(args)
    if args.resume is None and args.config is not None and has_arms(args.config, args.overrides):  # a [compare] table: run every arm
        return cmd_compare(args)
    result = run(args.config, args.overrides, out=args.out, quiet=args.quiet, verbose=args.verbose, resume=args.resume, warm_start=warm_start)
    status = result.summary["status"]
    if status == "interrupted":
        if args.quiet:  # otherwise the run's own output already said so
            print(f"fedft: interrupted; resume with: {result.summary.get('resume')}", file=sys.stderr)
        return 143 if result.summary.get("signal") == "SIGTERM" else 130  # 128 + signal number
    if status == "failed" and args.quiet and result.summary.get("error"):  # otherwise the run already printed it
        print(f"fedft: run failed: {result.summary['error']}", file=sys.stderr)
    return 0 if status == "completed" else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from fedft.jobs.compare import compare

    result = compare(args.config, args.overrides, out=args.out, quiet=args.quiet, verbose=args.verbose)
    return 0 if all(arm.summary["status"] == "completed" for arm in result.arms) else 1


def cmd_pretrain(args: argparse.Namespace) -> int:
    from fedft.jobs.pretrain import pretrain

    pretrain(args.config, args.overrides, out=args.out, quiet=args.quiet)
    return 0


def cmd_partitions(args: argparse.Namespace) -> int:
    from fedft.api import prepare
    from fedft.ml.data import federated_data_for
    from fedft.ml.data.plot import partition_title, plot_label_counts

    cfg = prepare(args.config, args.overrides)
    png, pdf = plot_label_counts(federated_data_for(cfg), args.out_png, title=partition_title(cfg))
    print(f"fedft partitions: wrote {png.resolve()} and {pdf.name} beside it (label counts per client; --out-png chooses the file)")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from fedft.ml.generate import generate, load_text_model

    model, vocab = load_text_model(args.model)
    print(generate(model, vocab, args.prompt, args.length, args.temperature, args.seed))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from fedft.ml.hf_export import export_merged

    out = export_merged(args.run_dir, args.merged)
    print(f"fedft export: wrote {Path(out).resolve()} (base + federated LoRA adapter merged; load it with transformers alone)")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedft.jobs.report import sweep_rows
    from fedft.jobs.sweep import sweep

    result = sweep(args.config, args.overrides, out=args.out, quiet=args.quiet, verbose=args.verbose, parallel=getattr(args, "parallel", 1))
    if result.interrupted:
        return 130  # as `fedft run` after Ctrl-C; the sweep resumes with `fedft sweep SWEEP_DIR`
    return 0 if all(r["status"] == "completed" for r in sweep_rows(result.sweep_dir)) else 1


def cmd_check(args: argparse.Namespace) -> int:
    from fedft.jobs.check import check

    print(f"{args.config}: ok, {check(args.config, args.overrides)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from fedft.jobs.report import write_report

    print(write_report(args.sweep_dir), end="")
    print(f"\nwrote {args.sweep_dir}/sweep.csv, sweep.md, sweep.png, sweep.pdf")
    return 0


def cmd_plan_dp(args: argparse.Namespace) -> int:
    import json

    from fedft.privacy.accounting import UnreachableBudget
    from fedft.privacy.planner import cohort_for_noise, plan_dp

    for name in ("population", "cohort", "rounds"):
        if getattr(args, name) < 1:
            raise FedftError(f"--{name}", f"= {getattr(args, name)} is not a positive count.", f"give --{name} of at least 1.")
    if args.cohort > args.population:
        raise FedftError("--cohort", f"= {args.cohort} is more than --population = {args.population}.", "give a cohort of at most the population.")
    if not 0 < args.delta < 1 or args.epsilon <= 0 or args.clipping_norm <= 0:
        bad = "--delta" if not 0 < args.delta < 1 else "--epsilon" if args.epsilon <= 0 else "--clipping-norm"
        raise FedftError(bad, f"= {getattr(args, bad[2:].replace('-', '_'))} is out of range.", "give 0 < delta < 1 and a positive epsilon and clipping norm.")
    if args.mechanism != "independent" and args.sampling == "poisson":
        raise FedftError("--mechanism", f"'{args.mechanism}' is accounted for fixed or cyclic participation, not Poisson.", "add --sampling cyclic (or fixed).")
    options = {"sampling": args.sampling, "mechanism": args.mechanism, "bands": args.bands, "clipping_norm": args.clipping_norm, "accountant": args.accountant}
    try:
        plan = plan_dp(args.population, args.cohort, args.rounds, args.epsilon, args.delta, **options)
        needed = cohort_for_noise(args.target_noise_std, args.population, args.rounds, args.epsilon, args.delta, **options) if args.target_noise_std else None
    except UnreachableBudget as exc:
        raise FedftError("--epsilon", f"is unreachable: {exc}.", "raise --epsilon or lower --rounds.") from None
    out = plan.as_dict() | ({"cohort_for_target_noise": needed, "target_noise_std": args.target_noise_std} if args.target_noise_std else {})
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"user-level DP, {args.population} users, {args.cohort} per round ({args.sampling}), {args.rounds} rounds, {args.mechanism} noise, "
          f"ε = {args.epsilon:g}, δ = {args.delta:g} ({args.accountant})")
    print(f"  noise_multiplier σ            {plan.noise_multiplier:.4f}   (σ / sensitivity {plan.effective_noise_multiplier:.4f}, sensitivity {plan.sensitivity:.3f} C)")
    print(f"  noise std per coordinate      {plan.noise_std_round:.3g} on a round's mean update (σC/m, C = {args.clipping_norm:g})")
    print(f"                                {plan.noise_std_final:.3g} on the sum of all rounds (the final model's)")
    print(f"  ε of this σ under RDP         {plan.epsilon_rdp:.3f} (a looser bound, for comparison)")
    if args.target_noise_std:
        print(f"  cohort for ≤ {args.target_noise_std:g} per coordinate  " + (f"{needed} users per round" if needed else "more than the population"))
    if args.simulated_cohort:
        print(f"  to simulate it with {args.simulated_cohort} clients per round: simulation.clients_per_round = {args.simulated_cohort}, "
              f"partition.num_clients = {max(args.simulated_cohort, round(args.population * args.simulated_cohort / args.cohort))}, "
              f"privacy.noise_multiplier = {plan.noise_multiplier:.4f}, privacy.noise_cohort_size = {args.cohort}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from fedft import __version__

    parser = argparse.ArgumentParser(prog="fedft", description="Federated fine-tuning simulations with Flower, PyTorch and Opacus.")
    parser.add_argument("--version", action="version", version=f"fedft {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one federated simulation")
    _add_run_args(p, config_optional=True)
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run in its results folder from its last checkpoint")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="check a config (every arm, every sweep point: data, model, privacy) without running anything")
    p.add_argument("config", help="TOML config, e.g. simulations/privacy_tradeoff.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compare", help="run the [compare] arms of a config and compare them (fedft run does this too)")
    _add_run_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("pretrain", help="train the model centrally on the [pretrain] public data; writes model.pt")
    p.add_argument("config", help="TOML config with a [pretrain] section, e.g. simulations/pretrain_public.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: <output.dir>/<name>-<timestamp>)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("partitions", help="plot the label distribution per client")
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out-png", default="partitions.png", help="the PNG to write (a PDF of the same figure goes beside it); default ./partitions.png")
    p.set_defaults(func=cmd_partitions)

    p = sub.add_parser("generate", help="sample text from a trained next-character model")
    p.add_argument("--model", required=True, help="a text run's model.pt, e.g. runs/<run>/model.pt")
    p.add_argument("--prompt", default="", help='text to continue, e.g. "ROMEO:" (default: start a new line)')
    p.add_argument("--length", type=int, default=300, help="characters to generate (default 300)")
    p.add_argument("--temperature", type=float, default=1.0, help="below 1: safer, above 1: wilder, 0: greedy (default 1)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("export", help="write an hf run's model with its LoRA adapter merged, loadable by transformers alone")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder with model.pt (model.name = \"hf\")")
    p.add_argument("--merged", required=True, metavar="OUT", help="new folder for the merged model (save_pretrained layout)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sweep", help="run a [sweep] grid of runs (resumable: give the sweep folder to continue) and report it")
    p.add_argument("config", help="TOML config with a [sweep] table, e.g. simulations/privacy_tradeoff.toml, or a sweep folder to resume")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override a field of the base config (repeatable)")
    p.add_argument("--out", default=None, help="sweep folder (default: <output.dir>/<name>-<timestamp>); an existing one resumes")
    p.add_argument("--parallel", type=int, default=1, help="points at once, each a `fedft run` process with its own local Ray on CPUs/N (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--verbose", action="store_true", help="show Flower and Ray logs")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plan-dp", help="plan user-level DP: σ, the noise per coordinate and the cohort needed, for a population, cohort, rounds, ε and δ")
    p.add_argument("--population", type=int, required=True, help="users (partition.num_clients of the planned deployment)")
    p.add_argument("--cohort", type=int, required=True, help="users per round (simulation.clients_per_round)")
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--epsilon", type=float, required=True, help="the run's ε budget")
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--sampling", choices=["poisson", "fixed", "cyclic"], default="poisson", help="privacy.client_sampling (default poisson)")
    p.add_argument("--mechanism", choices=["independent", "tree", "banded"], default="independent", help="privacy.noise_mechanism (default independent)")
    p.add_argument("--bands", type=int, default=None, help="banded: diagonals (default: the cyclic period, or all rounds)")
    p.add_argument("--clipping-norm", type=float, default=1.0, help="privacy.clipping_norm C (default 1)")
    p.add_argument("--accountant", choices=["pld", "rdp", "prv"], default="pld")
    p.add_argument("--target-noise-std", type=float, default=None, help="also find the smallest cohort whose round noise σC/m per coordinate is at most this")
    p.add_argument("--simulated-cohort", type=int, default=None, help="print the settings that simulate the plan with this many clients per round (pfl's noise cohort)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan_dp)

    p = sub.add_parser("report", help="re-render sweep.csv, sweep.md and sweep.png/.pdf from a sweep folder")
    p.add_argument("sweep_dir", help="a folder written by fedft sweep")
    p.set_defaults(func=cmd_report)

    from fedft.deploy.cli import add_deploy_commands

    add_deploy_commands(sub)  # certs, server, client, launch (real processes; see fedft/deploy/)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FedftError as exc:
        print(f"fedft: error: {exc.one_line()}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("fedft: interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The `fedft` command: `main`, then exit without tearing the interpreter down.

    What libraries registered to run at exit still runs (atexit: multiprocessing's
    joins, temporary folders, loggers), and every process a command started has exited
    by then (fedft's engine waits for them). Skipped is only the interpreter's own
    teardown of every loaded module (torch, Flower), about 0.6 s of a 5-round quickstart
    (benchmarks/README.md, section 16), which no result depends on."""
    import atexit
    import os

    code = main()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
