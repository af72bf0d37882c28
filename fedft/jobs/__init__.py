"""The jobs: what a command does from a config to a results folder.

`run` (one simulation) and `resume`, `compare`, `sweep` (with `parallel` and `report`),
`pretrain`, `check`, and `validate` (every rule a config must meet before a job starts);
`runner` runs named configs one after another, `tables` renders their Markdown tables;
`trackers` mirrors a run into TensorBoard, MLflow or W&B (`output.loggers`).
A job may import any layer below it (config, state, ml, privacy, strategies, fl,
runtime), never `fedft.deploy`, `fedft.api` or `fedft.cli`, which stand on the jobs.
"""
