"""Federation: the Flower apps and what they exchange.

`protocol` names the records on the wire; `client/` is the ClientApp and its one
update pipeline; `server/` is the ServerApp: the round loop, sampling, sending and
receiving, reply validation, central evaluation.

May import everything below it (config, state, ml, privacy, strategies); never the
runtime that starts the engine, the jobs or deployment.
"""
