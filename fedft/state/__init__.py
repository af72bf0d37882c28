"""Everything fedft writes to disk and reads back: the results folder (`run_folder`),
model files (`model_file`), run checkpoints (`run_checkpoint`, encoded by `snapshot`,
client state via `client_records`) and a node's own state (`node_store`), all
written by the one atomic writer (`atomic`).

This layer may import only `fedft.errors`, `fedft.config` and `fedft.fl.protocol`
(plus third-party packages); never `fedft.ml`, `fedft.privacy`, `fedft.fl`'s other
modules, `fedft.jobs` or anything above.
"""
