"""scripts.gpu.nvjpeg: the torchvision call, and what happens where it cannot run.

torchvision's ``decode_jpeg`` takes the same list on a CPU (libjpeg) as on CUDA (nvJPEG); the
CPU half runs where torchvision is installed, so the call's shape is checked without a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest

from scripts.decode import decode
from scripts.gpu.nvjpeg import GpuDecodeUnavailable, nvjpeg_decoder
from tests.fixtures.encodings import grey_jpeg, jpeg, png


def test_no_gpu_decoder_without_cuda() -> None:
    with pytest.raises(GpuDecodeUnavailable, match="CUDA is not available"):
        nvjpeg_decoder("cpu")


def test_torchvision_decodes_a_list_to_rgb_tensors() -> None:
    pytest.importorskip("torchvision")
    from scripts.gpu.nvjpeg import batch_decoder

    datas = [jpeg(1, (64, 48)), grey_jpeg(2, (30, 50)), jpeg(3, (27, 19))]
    out = batch_decoder("cpu")(datas)
    assert [tuple(t.shape) for t in out] == [(3, 48, 64), (3, 50, 30), (3, 19, 27)]
    for data, tensor in zip(datas, out):
        pillow = np.array(decode(data)).transpose(2, 0, 1).astype(int)
        assert np.abs(tensor.numpy().astype(int) - pillow).max() <= 2


def test_one_file_fails_the_whole_list() -> None:
    """Why the decode stage splits a failed batch: torchvision returns nothing for any of it."""
    pytest.importorskip("torchvision")
    from scripts.gpu.nvjpeg import batch_decoder

    with pytest.raises(RuntimeError):
        batch_decoder("cpu")([jpeg(1, (16, 16)), png(2, (16, 16))])
