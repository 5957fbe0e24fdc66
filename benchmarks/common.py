"""Shared helpers: timing, percentiles, the machine's load, memory, and a uniform report line."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Benchmarks never touch the network: the ViT-B/32 is a random-weight local copy.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

CACHE = Path(os.environ.get("IMAGESEARCH_BENCH_CACHE", Path.home() / ".cache" / "imagesearch-bench"))


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    return sum(parts) - idle, sum(parts)


def _own_jiffies() -> int:
    """CPU time of this process and its finished children, in jiffies."""
    t = os.times()
    return round((t.user + t.system + t.children_user + t.children_system) * os.sysconf("SC_CLK_TCK"))


@dataclass
class Load:
    """What the rest of the machine did while a figure was measured."""

    others: float = 0.0          # share of all cores used by other processes, 0..1
    loadavg: float = 0.0         # 1-minute load average at the end

    def __str__(self) -> str:
        return f"oth {self.others:.0%} load {self.loadavg:.1f}"


@contextmanager
def measure_load() -> Iterator[Load]:
    """Measure other processes' CPU share over the with-block (needs Linux /proc)."""
    load = Load()
    try:
        busy0, total0 = _cpu_jiffies()
    except OSError:
        yield load
        return
    own0 = _own_jiffies()
    yield load
    busy1, total1 = _cpu_jiffies()
    own = _own_jiffies() - own0
    span = max(1, total1 - total0)
    load.others = max(0.0, min(1.0, (busy1 - busy0 - own) / span))
    load.loadavg = os.getloadavg()[0]


@dataclass
class Latency:
    """Per-call latencies in milliseconds."""

    ms: list[float] = field(default_factory=list)
    load: Load = field(default_factory=Load)

    @property
    def p50(self) -> float:
        return float(np.percentile(self.ms, 50)) if self.ms else float("nan")

    @property
    def p95(self) -> float:
        return float(np.percentile(self.ms, 95)) if self.ms else float("nan")

    def __str__(self) -> str:
        return f"p50 {self.p50:.2f} ms  p95 {self.p95:.2f} ms  (n={len(self.ms)}, {self.load})"


def time_calls(fn: Callable[[int], object], n: int, *, warmup: int = 3, budget_s: float | None = None) -> Latency:
    """Call fn(i) one at a time, n times (fewer if budget_s runs out), after a few warm-up calls."""
    for i in range(min(warmup, n)):
        fn(i)
    out = Latency()
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    with measure_load() as load:
        for i in range(n):
            t = time.perf_counter()
            fn(i)
            out.ms.append((time.perf_counter() - t) * 1000)
            if deadline is not None and time.perf_counter() > deadline and len(out.ms) >= 20:
                break
    out.load = load
    return out


@contextmanager
def busy_process() -> Iterator[None]:
    """One other process spinning on a core meanwhile: what a shared host does to a latency."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        yield
    finally:
        spinner.kill()
        spinner.wait()


def rss_bytes() -> dict[str, int]:
    """Current resident memory: total, anonymous and file-backed (shared, mapped) parts."""
    out = {"rss": 0, "anon": 0, "file": 0}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile"):
                    out[{"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}[key]] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}x" if baseline else "n/a"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def header(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch and faiss versions."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return f"{model}, {os.cpu_count()} cores, {mem / 2**30:.0f} GiB RAM, Python {platform.python_version()}"


def mean(xs: Sequence[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def vit_b32(folder: Path | None = None) -> Path:
    """A random-weight CLIP with the real ViT-B/32 configuration (costs what the real one costs),
    built once and cached; loadable by SentenceTransformer(folder)."""
    folder = Path(folder or CACHE / "vit-b-32-random")
    if not (folder / "modules.json").is_file():
        from tests.fixtures.tiny_clip import build_tiny_clip

        print(f"building the random-weight ViT-B/32 in {folder} (once)", flush=True)
        build_tiny_clip(folder, full_size=True)
    return folder
