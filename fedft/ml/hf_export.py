"""`fedft export RUN_DIR --merged OUT`: a run's hf model with its federated LoRA adapter
merged into the base weights (peft's `merge_and_unload`: W + (alpha / r) B A), written by
`save_pretrained` so that `transformers` alone loads it. The character vocabulary the
model was trained on goes beside it as `fedft_vocabulary.json` (token 0 is 'unknown',
then the characters in order; see fedft.ml.data.text.Vocabulary)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from fedft.errors import FedftError
from fedft.ml.models import build_model
from fedft.ml.models.hf import CausalLM
from fedft.state.atomic import write_text
from fedft.state.model_file import load_checkpoint

VOCABULARY_FILE = "fedft_vocabulary.json"


def export_merged(run_dir: str | Path, out: str | Path) -> Path:
    """Write the merged model of the run in `run_dir` (its model.pt) to the folder `out`."""
    record = load_checkpoint(Path(run_dir) / "model.pt", field="RUN_DIR")
    if record.get("architecture") != "hf":
        raise FedftError("RUN_DIR", f"'{run_dir}' holds a '{record.get('architecture')}' model; --merged exports model.name = \"hf\" runs.", "pass the folder of a run with model.name = \"hf\".")
    target = Path(out)
    if target.exists() and any(target.iterdir()):
        raise FedftError("--merged", f"'{out}' exists and is not empty.", "give a new or empty folder.")
    model = build_model("hf", tuple(record["input_shape"]), int(record["num_classes"]), **dict(record.get("model_options") or {}))
    if not isinstance(model, CausalLM):
        raise FedftError("RUN_DIR", "model.name \"hf\" is registered by another module here.", "export in a process without plugins that replace 'hf'.")
    model.load_state_dict(record["state_dict"])
    lm = model.lm.merge_and_unload() if hasattr(model.lm, "merge_and_unload") else model.lm  # rank 0: nothing to merge
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"  # written whole, then renamed: never half an export
    try:
        lm.save_pretrained(partial)
        if isinstance(record.get("vocabulary"), str):
            write_text(partial / VOCABULARY_FILE, json.dumps({"unknown": 0, "chars": record["vocabulary"]}))
        if target.exists():
            target.rmdir()
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target
