"""scripts.ray_engine.cluster: the optional extra and the cluster address, each a clear error, fast."""

from __future__ import annotations

import socket
import sys
import time

import pytest

from scripts.ray_engine import cluster
from scripts.ray_engine.cluster import INSTALL_HINT, check_reachable, require_ray
from search_core.errors import BuildError


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("missing", ["ray", "ray.data"])
def test_missing_extra_says_how_to_install_it(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)      # what an environment without the extra imports
    if missing == "ray.data":
        monkeypatch.setitem(sys.modules, "ray", type(sys)("ray"))
    with pytest.raises(BuildError) as err:
        require_ray()
    message = str(err.value)
    assert INSTALL_HINT in message and "\n" not in message


@pytest.mark.parametrize("address", ["127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_refused_address_is_one_line_at_once(address):
    address = address.format(port=free_port())
    started = time.monotonic()
    with pytest.raises(BuildError, match="connection refused") as err:
        check_reachable(address)
    assert time.monotonic() - started < 2 and address in str(err.value) and "\n" not in str(err.value)


def test_unknown_host_is_named():
    with pytest.raises(BuildError, match="unknown host no-such-head.invalid"):
        check_reachable("no-such-head.invalid:6379")


def test_silent_host_gives_up_after_the_timeout(monkeypatch):
    """A host that never answers (packets dropped) costs the timeout, not Ray's minutes of retries."""
    def never(*args, **kwargs):
        raise TimeoutError

    monkeypatch.setattr(socket, "create_connection", never)
    with pytest.raises(BuildError, match="no answer from 10.0.0.9:6379 within 0.5 s"):
        check_reachable("10.0.0.9", timeout=0.5)


@pytest.mark.parametrize("address", ["host:port", ":6379", "ray://"])
def test_malformed_address_is_named(address):
    with pytest.raises(BuildError, match="--ray-address"):
        check_reachable(address)


def test_auto_without_a_cluster_says_to_start_one(monkeypatch, tmp_path):
    pytest.importorskip("ray")
    from ray._private import services

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))     # where `ray start` records the latest cluster
    # Ray's last resort finds any GCS process on this machine (the other tests' local Ray, say).
    monkeypatch.setattr(services, "find_gcs_addresses", list)
    with pytest.raises(BuildError, match="ray start --head"):
        check_reachable("auto")


def test_auto_uses_ray_address(monkeypatch):
    port = free_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(BuildError, match=f"127.0.0.1:{port}"):
        check_reachable("auto")


def test_worker_count_reads_nothing_without_ray(monkeypatch):
    """Where Ray cannot say (no connection, Ray Client), the progress line says '?' rather than failing."""
    monkeypatch.setitem(sys.modules, "ray", None)
    assert cluster.count_workers("Embedder") is None
