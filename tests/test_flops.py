"""MAC counting against torch's own flop counter, for every registered model and for the
ops `models/flops.py` counts by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgehar.models import count_macs, create_model, list_models


def torch_flops(fn, *args) -> int:
    """FLOPs torch's counter reports for `fn(*args)`, with no hand-counted additions."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn(*args)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", list_models())
def test_macs_are_half_torch_flops(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    inputs = model.example_inputs(batch=2)
    flops = torch_flops(model, *inputs)
    assert flops > 0
    assert count_macs(model, inputs) == flops // 2


def test_nonlocal_fusion_counts_its_attention_matmuls() -> None:
    """The figure the Conv2d/Linear hooks got wrong: 13.2 M without the bmm's, 14.4 M with."""
    model = create_model("nonlocal_fusion").eval()
    inputs = model.example_inputs(batch=1)
    macs = count_macs(model, inputs)
    assert round(macs / 1e6, 1) == 14.4
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    bmm_macs = counter.get_flop_counts()["Global"][torch.ops.aten.bmm] // 2
    assert round((macs - bmm_macs) / 1e6, 1) == 13.2  # what was counted without the attention


def test_single_layers() -> None:
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    assert count_macs(conv, (torch.randn(2, 3, 16, 16),)) == 2 * 8 * 8 * 8 * 3 * 3 * 3
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    assert count_macs(dw, (torch.randn(1, 8, 4, 4),)) == 8 * 4 * 4 * 9
    assert count_macs(nn.Linear(10, 5), (torch.randn(4, 10),)) == 4 * 5 * 10
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    assert count_macs(_Fn(lambda x, y: torch.einsum("bik,bkj->bij", x, y)), (a, b)) == 2 * 3 * 4 * 5


class _Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *args):
        return self.fn(*args)


def test_fused_cpu_attention_kernels_are_counted() -> None:
    """torch's counter reads 0 for the CPU flash kernel and the MHA fast path; we count them."""
    q, k, v = (torch.randn(2, 3, 5, 8) for _ in range(3))  # shapes the flash kernel takes
    sdpa = _Fn(nn.functional.scaled_dot_product_attention)
    assert torch_flops(sdpa, q, k, v) == 0  # the gap this module fills
    assert count_macs(sdpa, (q, k, v)) == 2 * 3 * 5 * 5 * (8 + 8)  # QK^T and AV
    mha = nn.MultiheadAttention(16, 2, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    assert torch_flops(mha, x, x, x) == 0  # the fast path's fused op
    projections = 4 * 2 * 5 * 16 * 16  # q, k, v and out, each B*L*E*E
    attention = 2 * 2 * 5 * 5 * 16  # QK^T and AV over all heads
    assert count_macs(mha, (x, x, x)) == projections + attention


@pytest.mark.parametrize(("rnn", "gates"), [
    (nn.LSTM(8, 16, num_layers=2, bidirectional=True, batch_first=True), 4),
    (nn.GRU(8, 16), 3),
    (nn.RNN(8, 16, bidirectional=True), 1),
], ids=["lstm", "gru", "rnn"])
def test_recurrent_layers_are_counted(rnn: nn.RNNBase, gates: int) -> None:
    """Every step's two projections; torch's counter reads 0 for the LSTM's oneDNN kernel."""
    x = torch.randn(2, 5, 8)
    if isinstance(rnn, nn.LSTM):
        assert torch_flops(rnn, x) == 0  # the gap this module fills
    directions = 2 if rnn.bidirectional else 1
    expected, width = 0, 8
    for _ in range(rnn.num_layers):
        expected += directions * 2 * 5 * gates * 16 * (width + 16)  # B*T steps, W_ih and W_hh
        width = directions * 16
    assert count_macs(rnn, (x,)) == expected
