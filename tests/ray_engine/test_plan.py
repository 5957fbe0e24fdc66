"""scripts.ray_engine.plan: the worker pool from the cluster's size and the options given."""

from __future__ import annotations

import pytest

from scripts.ray_engine.plan import plan_workers
from search_core.errors import BuildError


@pytest.mark.parametrize("cpus, gpus, options, expected", [
    # (workers, cpus per worker, gpus per worker, device)
    (2, 0, {}, (1, 1.0, 0.0, "cpu")),                                   # this machine: one model, one decoder
    (2, 0, {"workers": 2}, (2, 0.5, 0.0, "cpu")),                       # two models share the spare core
    (16, 0, {}, (3, 4.0, 0.0, "cpu")),                                  # 2 CPUs kept for decoding
    (64, 0, {}, (14, 4.0, 0.0, "cpu")),
    (16, 0, {"cpus_per_worker": 2}, (7, 2.0, 0.0, "cpu")),
    (16, 0, {"workers": 2}, (2, 4.0, 0.0, "cpu")),
    (32, 4, {}, (4, 1.0, 1.0, "cuda")),                                 # one worker per GPU
    (32, 4, {"gpus_per_worker": 0.5}, (8, 1.0, 0.5, "cuda")),           # two models per GPU
    (32, 4, {"gpus_per_worker": 0}, (7, 4.0, 0.0, "cpu")),             # GPUs there, CPUs asked for
    (32, 4, {"workers": 2, "cpus_per_worker": 3}, (2, 3.0, 1.0, "cuda")),
])
def test_plans(cpus, gpus, options, expected):
    plan = plan_workers(cpus, gpus, **options)
    assert (plan.workers, plan.cpus_per_worker, plan.gpus_per_worker, plan.device) == expected
    assert plan.workers_that_fit >= 1


def test_threads_follow_the_cpu_share():
    assert plan_workers(16, 0).threads == 4
    assert plan_workers(2, 0, workers=2).threads == 1          # half a core still runs one thread


def test_more_workers_than_fit_is_allowed_but_reported():
    """A cluster that may grow (an autoscaler) can be asked for more workers than it has now."""
    plan = plan_workers(4, 0, workers=8, cpus_per_worker=1)
    assert plan.workers == 8 and plan.workers_that_fit == 3


@pytest.mark.parametrize("cpus, gpus, options, words", [
    (2, 0, {"gpus_per_worker": 1}, "has 0"),
    (2, 0, {"cpus_per_worker": 2}, "do not fit"),          # no CPU left for decoding
    (1, 0, {}, "do not fit"),
    (8, 0, {"workers": 0}, "at least 1"),
    (8, 0, {"cpus_per_worker": 0}, "more than 0"),
    (8, 1, {"gpus_per_worker": -1}, "negative"),
])
def test_impossible_plans_are_one_clear_error(cpus, gpus, options, words):
    with pytest.raises(BuildError, match=words):
        plan_workers(cpus, gpus, **options)
