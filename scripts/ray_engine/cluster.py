"""Joining Ray: the optional extra, a local instance or an existing cluster, and who is alive.

Without an address Ray starts a local instance (this machine, every core) and stops it at the
end. With one (``auto``, ``host:port`` of a head node's GCS, or ``ray://host:port`` for Ray
Client) the build joins that cluster and only disconnects. An address that does not answer is one
BuildError within CONNECT_TIMEOUT seconds: ``ray.init`` itself retries an unreachable GCS for
minutes (measured here: still retrying after 120 s).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType

from search_core.errors import BuildError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'imagesearch[ray]'"
CONNECT_TIMEOUT = 5.0
GCS_PORT = 6379            # `ray start --head`'s default
CLIENT_PORT = 10001        # Ray Client's default (ray://)


@dataclass(frozen=True)
class Cluster:
    """The Ray instance the build runs on."""

    address: str | None           # None: a local instance started for this build
    cpus: float
    gpus: float
    nodes: int


def require_ray() -> ModuleType:
    """`ray` with Ray Data, or a BuildError saying how to install it (one line)."""
    try:
        import ray
        import ray.data  # Ray Core alone lacks it: `pip install ray` is not enough
    except ImportError as exc:
        raise BuildError(f"--engine ray needs Ray Data, which is not installed ({exc.name or 'ray'} is "
                         f"missing): {INSTALL_HINT}") from None
    return ray


@contextmanager
def ray_cluster(address: str | None) -> Iterator[Cluster]:
    """Use the Ray this process is already connected to, else join `address` or start a local one.

    Only a connection made here is closed here (a test, or a notebook, may hold its own).
    """
    ray = require_ray()
    connected_here = False
    if not ray.is_initialized():
        _connect(ray, address)
        connected_here = True
    try:
        resources = ray.cluster_resources()
        yield Cluster(address=address, cpus=float(resources.get("CPU", 0)), gpus=float(resources.get("GPU", 0)),
                      nodes=sum(1 for node in ray.nodes() if node.get("Alive")))
    finally:
        if connected_here:
            ray.shutdown()


def _connect(ray: ModuleType, address: str | None) -> None:
    # Ray's own chatter (the local instance's banner, the auth-token notice) is not ours to print;
    # worker output stays in Ray's session logs (RAY_TMPDIR, /tmp/ray by default).
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address is not None:
        check_reachable(address)
    try:
        with quiet_core_logs():
            ray.init(address=address, **options)
    except Exception as exc:
        where = "start a local Ray instance" if address is None else f"join the Ray cluster at {address}"
        raise BuildError(f"Could not {where}: {_first_line(exc)}") from exc


@contextmanager
def quiet_core_logs() -> Iterator[None]:
    """Ray's C++ core writes notices straight to this process's stderr at ERROR, such as one about
    restartable actors that Ray Data's own worker pools cause (ray-project/ray#53727, harmless
    here); its level (RAY_BACKEND_LOG_LEVEL, unless the user set one) is read as Ray connects, which
    itself prints a line saying so. What fails reaches the build as a Python exception anyway."""
    if "RAY_BACKEND_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["RAY_BACKEND_LOG_LEVEL"] = "fatal"
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        del os.environ["RAY_BACKEND_LOG_LEVEL"]     # read by now; processes started later choose their own


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """A BuildError, fast, when nothing answers at `address` (``auto`` resolved as Ray resolves it)."""
    host, port = _endpoint(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror:
        raise BuildError(f"Cannot reach the Ray cluster at {address}: unknown host {host}.") from None
    except TimeoutError:
        raise BuildError(f"Cannot reach the Ray cluster at {address}: no answer from {host}:{port} within "
                         f"{timeout:g} s.") from None
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
        raise BuildError(f"Cannot reach the Ray cluster at {address}: {reason} at {host}:{port} (is "
                         "`ray start --head` running there?).") from None


def _endpoint(address: str) -> tuple[str, int]:
    """(host, port) to test for an --ray-address."""
    if address == "auto":
        address = _resolve_auto()
    client = address.startswith("ray://")
    rest = address[len("ray://"):] if client else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep:
        host, port = rest.rstrip("/"), ""
    if port and not port.isdigit():
        raise BuildError(f"--ray-address {address!r} is not auto, host:port or ray://host:port.")
    if not host:
        raise BuildError(f"--ray-address {address!r} names no host.")
    return host.strip("[]"), int(port) if port else (CLIENT_PORT if client else GCS_PORT)


def _resolve_auto() -> str:
    """The address `ray.init(address="auto")` would use: RAY_ADDRESS, else the latest `ray start` here."""
    from_env = os.environ.get("RAY_ADDRESS")
    if from_env and from_env != "auto":
        return from_env
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die

        return canonicalize_bootstrap_address_or_die("auto")
    except ConnectionError:
        raise BuildError("--ray-address auto found no running Ray cluster on this machine: start one with "
                         "`ray start --head`, or pass the head node's address.") from None


@dataclass(frozen=True)
class WorkerCount:
    alive: int
    starting: int          # being created or restarted (a worker that died comes back this way)

    def __str__(self) -> str:
        return f"{workers(self.alive)} alive" + (f", {self.starting} starting" if self.starting else "")


def workers(n: int) -> str:
    return f"{n} worker{'' if n == 1 else 's'}"


def count_workers(class_name: str) -> WorkerCount | None:
    """This job's actors running `class_name`, by state; None where Ray cannot say.

    Read from the GCS's actor table (``ray._private.state``): the public state API needs the
    dashboard, which this build does not start.
    """
    try:
        import ray
        from ray._private import state

        job = ray.get_runtime_context().get_job_id()
        states = [info.get("State") for info in state.actors().values()
                  if info.get("JobID") == job and f"({class_name})" in str(info.get("ActorClassName", ""))]
    except Exception:  # noqa: BLE001 - Ray Client, or a Ray without this table: progress says "?"
        return None
    return WorkerCount(alive=states.count("ALIVE"),
                       starting=sum(s in ("PENDING_CREATION", "DEPENDENCIES_UNREADY", "RESTARTING") for s in states))


class WorkerCounter:
    """Counts the workers every `every` seconds on a thread while the driver waits on Ray Data.

    `latest` is the last count; `busiest` the one with the most workers alive, which the stage's
    final line reports (by then the pool is being torn down).
    """

    def __init__(self, class_name: str, every: float = 1.0,
                 on_count: Callable[[WorkerCount], None] | None = None) -> None:
        self.class_name, self.every, self.on_count = class_name, every, on_count
        self.latest: WorkerCount | None = None
        self.busiest: WorkerCount | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-worker-count", daemon=True)

    @contextmanager
    def running(self) -> Iterator[WorkerCounter]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def _run(self) -> None:
        while True:
            count = count_workers(self.class_name)
            if count is not None:
                self.latest = count
                if self.on_count is not None:
                    self.on_count(count)
                if self.busiest is None or count.alive > self.busiest.alive:
                    self.busiest = WorkerCount(alive=count.alive, starting=0)
            if self._stop.wait(self.every):
                return


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
