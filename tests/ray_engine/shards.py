"""Parquet and WebDataset shards of generated images, as img2dataset-style pipelines write them."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import datasets

from tests.fixtures.images import bl_file_name, draw_image


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    draw_image(seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def names(n: int) -> list[str]:
    return [bl_file_name(700 + i, 0, 10 + i, 1, f"Shard book {i}", 1850 + 10 * (i % 3)) for i in range(n)]


def write_parquet_shards(folder: Path, n: int = 6, per_shard: int = 3, bad: bytes | None = None) -> list[str]:
    """datasets' own Parquet (an Image column of {bytes, path}); `bad` replaces the last image's bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    files = names(n)
    features = datasets.Features({"image": datasets.Image(), "note": datasets.Value("string")})
    for s in range(0, n, per_shard):
        rows = range(s, min(n, s + per_shard))
        images = [{"bytes": bad if (bad is not None and i == n - 1) else jpeg(i), "path": files[i]} for i in rows]
        datasets.Dataset.from_dict({"image": images, "note": [f"row {i}" for i in rows]},
                                   features=features).to_parquet(str(folder / f"part-{s // per_shard:05d}.parquet"))
    return files


def write_webdataset_shards(folder: Path, n: int = 6, per_shard: int = 3) -> dict[str, int]:
    """Tar shards of ``KEY.jpg`` + ``KEY.json`` ({"year": ...}); returns each key's image seed."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for s in range(0, n, per_shard):
        with tarfile.open(folder / f"shard-{s // per_shard:05d}.tar", "w") as tar:
            for i in range(s, min(n, s + per_shard)):
                key = f"sample{i:05d}"
                seeds[key] = 500 + i
                for suffix, data in (("jpg", jpeg(500 + i)), ("json", json.dumps({"year": 1800 + i}).encode())):
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return seeds
