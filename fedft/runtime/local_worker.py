"""What a local worker process runs (fedft.runtime.local_backend's pool): kept apart from
the backend, which imports Flower's engine, so that the warm-start process
(fedft.runtime.warm_start) needs only the client side to serve.

What a worker does is what a Ray actor does (`flwr.simulation.ray_transport.ray_actor.
ClientAppActor.run`): it gets (message, context) pickled, calls the ClientApp, and sends
(reply, context) back pickled; an exception in the ClientApp comes back as
("raised", message, traceback), which the driver turns into `ClientAppException`.
"""

from __future__ import annotations

import signal
import traceback
from multiprocessing.connection import Connection

from flwr.clientapp import ClientApp


def serve(conn: Connection, client_app: ClientApp, others: list[Connection]) -> None:
    """A worker's loop: run the ClientApp on each (message, context) until told to stop
    (None) or the pipe closes. `others`: pipe ends this process inherited but must not
    hold (the driver's, other workers'), closed first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for other in others:  # the driver's ends of the pipes (this worker's and the others'): only the driver may hold them
        other.close()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        message, context = job
        try:
            reply: tuple = ("ok", client_app(message=message, context=context), context)
        except Exception as ex:  # noqa: BLE001  (as Ray's ClientAppActor: every exception becomes ClientAppException)
            reply = ("raised", f"{ex}", traceback.format_exc())
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
