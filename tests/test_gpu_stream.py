"""scripts.gpu.stream end to end on the CPU: a stand-in for nvJPEG (Pillow, without the CPU
decoder's EXIF rotation or colour handling, refusing what is not a JPEG as nvJPEG does), the
real routing, reading, CPU fallback, tensor preprocessing and model. Whatever the GPU decoder
refuses, the result must equal the CPU build's: same rows embedded, same files skipped for the
same reasons, the same vectors."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scripts.embedding import embed_stream
from scripts.gpu import select_embed_stream
from scripts.gpu.stream import StreamStats, gpu_embed_stream
from search_core.encoder import Encoder, compare_embeddings
from tests.fixtures.encodings import BROKEN_KINDS, GPU_KINDS, KINDS, extension


@pytest.fixture(scope="module")
def encoder(tiny_clip) -> Encoder:
    return Encoder.load(str(tiny_clip), device="cpu", precision="fp32")


class StandInDecoder:
    """What nvJPEG does with a batch, on the CPU: JPEG pixels as stored (no EXIF rotation), one
    exception for the whole batch if any file is not a JPEG or is in `refuse`."""

    def __init__(self, refuse=lambda img: False) -> None:
        self.refuse = refuse
        self.calls: list[int] = []

    def __call__(self, datas):
        self.calls.append(len(datas))
        out = []
        for data in datas:
            img = Image.open(io.BytesIO(data))
            if img.format != "JPEG" or self.refuse(img):
                raise RuntimeError("Error while decoding JPEG images: Failed to decode batch")
            out.append(torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1))
        return out


def every_kind(n_each: int = 3) -> list[dict]:
    kinds = sorted(KINDS)
    return [{"bytes": KINDS[kinds[i % len(kinds)]](i, (96 + i % 7, 72)), "path": None, "kind": kinds[i % len(kinds)]}
            for i in range(n_each * len(kinds))]


def batches(items, size):
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield list(range(start, start + len(chunk))), (lambda chunk=chunk: chunk)


def flatten(out):
    return ([p for b in out for p in b.positions], [s for b in out for s in b.skipped],
            np.concatenate([b.vectors for b in out if len(b.positions)]))


def assert_same_as_cpu(encoder, items, out) -> None:
    positions, skipped, vectors = flatten(out)
    ref_positions, ref_skipped, ref_vectors = flatten(list(embed_stream(encoder, batches(items, 8))))
    assert positions == ref_positions
    assert skipped == ref_skipped
    fidelity = compare_embeddings(ref_vectors, vectors)
    assert fidelity.mean_cosine >= 0.999 and fidelity.min_cosine >= 0.99, fidelity


def test_every_kind_of_file_is_embedded_or_skipped_as_the_cpu_build_does(encoder) -> None:
    items = every_kind()
    stats = StreamStats()
    out = list(gpu_embed_stream(encoder, batches(items, 8), workers=2, decode=StandInDecoder(), stats=stats))
    assert [len(b.positions) + len(b.skipped) for b in out] == [8] * (len(items) // 8) + [len(items) % 8] * bool(
        len(items) % 8)
    assert_same_as_cpu(encoder, items, out)
    on_gpu = sum(i["kind"] in GPU_KINDS for i in items)
    assert stats.counts.gpu == on_gpu
    assert stats.counts.skipped == sum(i["kind"] in BROKEN_KINDS for i in items)
    assert stats.counts.gpu_refused == 0
    assert stats.counts.cpu == len(items) - on_gpu - stats.counts.skipped


def test_files_the_gpu_decoder_refuses_go_to_the_cpu(encoder) -> None:
    """A refused file fails nvJPEG's whole batch: the batch is split until the file is found."""
    items = every_kind()
    decoder = StandInDecoder(refuse=lambda img: img.mode == "L")
    stats = StreamStats()
    out = list(gpu_embed_stream(encoder, batches(items, 8), workers=2, decode=decoder, stats=stats))
    assert_same_as_cpu(encoder, items, out)
    grey = sum(i["kind"] == "grey-jpeg" for i in items)
    assert stats.counts.gpu_refused == grey > 0
    assert stats.counts.gpu == sum(i["kind"] in GPU_KINDS for i in items) - grey


def test_a_gpu_decoder_that_refuses_everything_leaves_it_all_to_the_cpu(encoder) -> None:
    items = every_kind(2)
    stats = StreamStats()
    out = list(gpu_embed_stream(encoder, batches(items, 16), decode=StandInDecoder(refuse=lambda img: True),
                                stats=stats))
    assert_same_as_cpu(encoder, items, out)
    assert stats.counts.gpu == 0 and stats.counts.gpu_refused == sum(i["kind"] in GPU_KINDS for i in items)


def test_a_wrongly_sized_gpu_result_is_decoded_again_on_the_cpu(encoder) -> None:
    items = every_kind(1)

    def cropped(datas):
        return [img[:, 1:, :] for img in StandInDecoder()(datas)]

    stats = StreamStats()
    assert_same_as_cpu(encoder, items, list(gpu_embed_stream(encoder, batches(items, 8), decode=cropped,
                                                             stats=stats)))
    assert stats.counts.gpu == 0 and stats.counts.gpu_refused > 0


class OomModel:
    """The encoder, except that more than `limit` images at once runs out of memory."""

    def __init__(self, encoder: Encoder, limit: int) -> None:
        self._encoder = encoder
        self.limit = limit

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def embed_preprocessed(self, features):
        if len(features["pixel_values"]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return self._encoder.embed_preprocessed(features)


def test_out_of_memory_halves_the_batch_and_loses_nothing(encoder) -> None:
    """Both GPU stages: nvJPEG running out of memory, then the model; the run goes on with halves."""
    items = every_kind()
    decoder = StandInDecoder()

    def decode(datas):
        if len(datas) > 3:
            raise RuntimeError("Error while decoding JPEG images: CUDA out of memory.")
        return decoder(datas)

    stats = StreamStats()
    out = list(gpu_embed_stream(OomModel(encoder, limit=2), batches(items, 16), decode=decode,  # type: ignore[arg-type]
                                batch_size=16, stats=stats))
    assert_same_as_cpu(encoder, items, out)
    assert stats.halvings >= 2
    assert max(decoder.calls) <= 3


def test_image_folder_files_with_missing_ones(encoder, tmp_path: Path) -> None:
    items = []
    for i, kind in enumerate(sorted(KINDS)):
        path = tmp_path / f"{i:02d}{extension(kind)}"
        path.write_bytes(KINDS[kind](i, (80, 60)))
        items.append({"path": str(path), "bytes": None})
    # Missing right after a file that is no image, in the same batch: listed in the CPU build's order.
    gone = sorted(KINDS).index("not-an-image") + 1
    items.insert(gone, {"path": str(tmp_path / "gone.jpg"), "bytes": None})
    out = list(gpu_embed_stream(encoder, batches(items, 5), workers=2, decode=StandInDecoder()))
    assert_same_as_cpu(encoder, items, out)
    assert [(gone - 1, "not an image file"), (gone, "file not found")] == [
        s for s in flatten(out)[1] if s[0] in (gone - 1, gone)]


def test_a_failing_fetch_is_raised_not_hung(encoder) -> None:
    def bad_batches():
        yield [0], (lambda: [{"bytes": KINDS["jpeg"](0), "path": None}])
        yield [1], (lambda: (_ for _ in ()).throw(OSError("dataset shard unreadable")))

    with pytest.raises(OSError, match="shard unreadable"):
        list(gpu_embed_stream(encoder, bad_batches(), decode=StandInDecoder()))


def test_stopping_early_does_not_hang(encoder) -> None:
    items = every_kind(4)
    stream = gpu_embed_stream(encoder, batches(items, 4), decode=StandInDecoder())
    first = next(stream)
    stream.close()
    assert first.positions or first.skipped


# --- The build's one choice ------------------------------------------------------------------

class CudaEncoder:
    device = "cuda"


def test_the_cpu_build_keeps_its_stream(encoder) -> None:
    assert select_embed_stream(encoder) is embed_stream


def test_cuda_without_torchvision_falls_back_with_a_reason(caplog) -> None:
    """Here (a CPU torch, no torchvision) a CUDA build would decode with Pillow, and says so."""
    with caplog.at_level(logging.WARNING):
        assert select_embed_stream(CudaEncoder()) is embed_stream  # type: ignore[arg-type]
    assert "decoding images on the CPU" in caplog.text and "torchvision" in caplog.text


def test_cuda_with_nvjpeg_takes_the_gpu_stream(encoder, monkeypatch) -> None:
    from scripts.gpu import nvjpeg

    decoder = StandInDecoder()
    monkeypatch.setattr(nvjpeg, "nvjpeg_decoder", lambda device: decoder)
    monkeypatch.setattr(encoder, "device", "cuda")
    try:
        stream = select_embed_stream(encoder)
    finally:
        monkeypatch.setattr(encoder, "device", "cpu")
    assert stream.func is gpu_embed_stream and stream.keywords["decode"] is decoder  # type: ignore[attr-defined]
    assert stream.keywords["preprocessing"].shortest_edge == 32  # type: ignore[attr-defined]


def test_a_build_through_the_gpu_stream_lists_the_same_skips(tiny_clip, tmp_path: Path, monkeypatch) -> None:
    """`imagesearch build` with the GPU stream (nvJPEG stood in for) gives the CPU build's collection:
    the same rows, the same skipped.jsonl, the same vectors."""
    from scripts import build
    from scripts.engines import local as local_engine
    from search_core import layout

    source = tmp_path / "images" / "1890"
    source.mkdir(parents=True)
    for i, kind in enumerate(sorted(KINDS)):
        (source / f"{i:02d}_{kind}{extension(kind)}").write_bytes(KINDS[kind](i, (90, 70)))
    cpu = build.build_collection(str(source.parent), tmp_path / "cpu", model=str(tiny_clip), device="cpu",
                                 progress=False)
    monkeypatch.setattr(local_engine, "select_embed_stream",
                        lambda enc: lambda *a, **kw: gpu_embed_stream(*a, decode=StandInDecoder(), **kw))
    gpu = build.build_collection(str(source.parent), tmp_path / "gpu", model=str(tiny_clip), device="cpu",
                                 progress=False)
    assert gpu.rows == cpu.rows and sorted(gpu.skipped) == sorted(cpu.skipped) and len(cpu.skipped) == 2
    def listed(out: Path) -> list[dict]:
        return [json.loads(line) for line in (out / layout.SKIPPED).read_text().splitlines()]

    assert listed(tmp_path / "gpu") == listed(tmp_path / "cpu")
    fidelity = compare_embeddings(np.load(tmp_path / "cpu" / layout.EMBEDDINGS),
                                  np.load(tmp_path / "gpu" / layout.EMBEDDINGS))
    assert fidelity.mean_cosine >= 0.999 and fidelity.min_cosine >= 0.99, fidelity


def test_a_saved_dataset_is_embedded_from_its_arrow_bytes(tiny_clip, tmp_path: Path, monkeypatch) -> None:
    """A `save_to_disk` dataset holds the encoded bytes in Arrow: they are embedded from there, no
    file read, with the same result as the CPU build."""
    import datasets

    from scripts import build
    from scripts.engines import local as local_engine

    kinds = sorted(KINDS)
    rows = {"image": [{"bytes": KINDS[k](i, (90, 70)), "path": f"{i:02d}_{k}{extension(k)}"} for i, k in enumerate(kinds)],
            "year": [1850 + i for i in range(len(kinds))]}
    source = tmp_path / "saved"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).save_to_disk(str(source))
    cpu = build.build_collection(str(source), tmp_path / "cpu", model=str(tiny_clip), device="cpu", progress=False)
    opened: list[str] = []
    real_open = open

    def watched_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def gpu_stream(*args, **kwargs):
        monkeypatch.setattr("builtins.open", watched_open)
        try:
            yield from gpu_embed_stream(*args, decode=StandInDecoder(), **kwargs)
        finally:
            monkeypatch.setattr("builtins.open", real_open)

    monkeypatch.setattr(local_engine, "select_embed_stream", lambda enc: gpu_stream)
    gpu = build.build_collection(str(source), tmp_path / "gpu", model=str(tiny_clip), device="cpu", progress=False)
    assert gpu.rows == cpu.rows and sorted(gpu.skipped) == sorted(cpu.skipped) and len(cpu.skipped) == 2
    assert not [f for f in opened if f.endswith(tuple(extension(k) for k in kinds))]


def test_a_gpu_decoder_that_drops_images_loses_nothing(encoder) -> None:
    """A decoder returning fewer images than files is not trusted: the files are decoded again."""
    items = every_kind(1)

    def short(datas):
        return StandInDecoder()(datas)[:-1]

    assert_same_as_cpu(encoder, items, list(gpu_embed_stream(encoder, batches(items, 8), decode=short)))
