"""Recurrent layers written as `nn.Linear` cells unrolled over a fixed number of steps.

Why not `nn.LSTM`: it neither fuses nor quantizes on the edge runtimes (docs/platform-notes.md,
"ExecuTorch (XNNPACK)" and "LiteRT": under ExecuTorch it splits into ~20 XNNPACK pieces
with ops left outside and PT2E int8 leaves its body fp32; LiteRT's static int8 quantizer
crashes on `nn.GRU`). A cell made
of `nn.Linear` + elementwise gates, unrolled over the static number of steps, exports
with `torch.export` as one graph that lowers to a single delegate and quantizes.

The input projection of every step is one Linear call over (B, T, in) before the loop
(one big GEMM instead of T small ones); only the recurrent projection runs per step.
Steps and gates are taken with slices, the first step starts from no state instead of
zero tensors: `select`, `chunk` (split_with_sizes) and `zeros` are ops XNNPACK does not
take, and each split the LSTM into more delegate pieces (8 for one small BiLSTM, measured);
written this way a BiLSTM lowers to a single piece with nothing left outside.
Gate order and equations are the standard LSTM (Hochreiter & Schmidhuber, with forget
gate; the same as `nn.LSTM`):

    i, f, g, o = split(W_x x_t + b + W_h h_{t-1})
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)
"""

from __future__ import annotations

import torch
from torch import nn


class LSTMCell(nn.Module):
    """One LSTM step; `input_proj` is applied to a whole sequence by the caller (see module doc)."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_proj = nn.Linear(input_size, 4 * hidden_size)  # W_x, b
        self.hidden_proj = nn.Linear(hidden_size, 4 * hidden_size, bias=False)  # W_h
        with torch.no_grad():  # forget-gate bias 1: remember by default early in training (Jozefowicz et al. 2015)
            self.input_proj.bias.zero_()
            self.input_proj.bias[hidden_size : 2 * hidden_size] = 1.0

    def step(
        self, xp: torch.Tensor, h: torch.Tensor | None = None, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """xp: the projected input W_x x_t + b, (B, 4H); returns the new (h, c), each (B, H).
        h = c = None is the zero initial state (W_h 0 and f * 0 are skipped, not computed)."""
        assert (h is None) == (c is None), "pass both h and c, or neither for the zero state"
        z = xp if h is None else xp + self.hidden_proj(h)
        H = self.hidden_size
        i, f, g, o = (z[:, k * H : (k + 1) * H] for k in range(4))  # slices, not chunk (module doc)
        c = torch.sigmoid(i) * torch.tanh(g) if c is None else torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class LSTM(nn.Module):
    """Unrolled (optionally bidirectional) LSTM: (B, T, in) -> outputs (B, T, dirs*H).

    The state starts at zero, as `nn.LSTM` without hx. Bidirectional concatenates
    [forward, backward] per step, as `nn.LSTM(bidirectional=True)` does.
    """

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = False):
        super().__init__()
        self.hidden_size = hidden_size
        self.forward_cell = LSTMCell(input_size, hidden_size)
        self.backward_cell = LSTMCell(input_size, hidden_size) if bidirectional else None

    @property
    def output_size(self) -> int:
        return self.hidden_size * (2 if self.backward_cell is not None else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.run(self.forward_cell, x, reverse=False)
        if self.backward_cell is None:
            return out
        return torch.cat([out, self.run(self.backward_cell, x, reverse=True)], dim=-1)

    def run(self, cell: LSTMCell, x: torch.Tensor, reverse: bool) -> torch.Tensor:
        """One direction over all T steps: (B, T, in) -> (B, T, H), outputs in input order."""
        T = x.shape[1]
        xp = cell.input_proj(x)  # (B, T, 4H), every step's input projection at once
        h = c = None  # the zero state
        outs: list[torch.Tensor] = []
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            h, c = cell.step(xp[:, t : t + 1].flatten(1), h, c)  # a slice, not a select (module doc)
            outs.append(h)
        return torch.stack(outs[::-1] if reverse else outs, dim=1)


class GRUCell(nn.Module):
    """One GRU step (Cho et al. 2014, the gate equations of `nn.GRU`), written like `LSTMCell`:

        r, z = sigmoid(W_xr x + b_xr + W_hr h + b_hr), sigmoid(W_xz x + b_xz + W_hz h + b_hz)
        n    = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))
        h'   = (1 - z) * n + z * h
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input_proj = nn.Linear(input_size, 3 * hidden_size)  # W_x, b_x for r, z, n
        self.hidden_proj = nn.Linear(hidden_size, 3 * hidden_size)  # W_h, b_h (b_hn sits inside r *)

    def step(self, xp: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """xp: the projected input (B, 3H); h: (B, H), None for the zero state -> the new h (B, H)."""
        H = self.hidden_size
        hp = self.hidden_proj.bias if h is None else self.hidden_proj(h)  # W_h 0 + b_h = b_h
        r = torch.sigmoid(xp[:, :H] + hp[..., :H])
        z = torch.sigmoid(xp[:, H : 2 * H] + hp[..., H : 2 * H])
        n = torch.tanh(xp[:, 2 * H :] + r * hp[..., 2 * H :])
        return n - z * n if h is None else n + z * (h - n)


class GRU(nn.Module):
    """Unrolled one-directional GRU: (B, T, in) -> outputs (B, T, H), zero initial state."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.cell = GRUCell(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp = self.cell.input_proj(x)  # (B, T, 3H), every step's input projection at once
        h: torch.Tensor | None = None
        outs: list[torch.Tensor] = []
        for t in range(x.shape[1]):
            h = self.cell.step(xp[:, t : t + 1].flatten(1), h)
            outs.append(h)
        return torch.stack(outs, dim=1)
