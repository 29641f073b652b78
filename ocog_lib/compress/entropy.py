"""The factorised entropy model: one learned CDF per latent channel (Balle et al. 2017/2018).

Each channel's density is the derivative of a monotone function c: R -> (0, 1), a small
per-channel network (Balle 2018, appendix 6.1: filters (1, 3, 3, 3, 1), its matrices
made positive by softplus, tanh gates whose factors tanh keeps in (-1, 1)), so c is a
valid CDF by construction. The probability of an integer latent value k is the mass of
[k - 1/2, k + 1/2]; in training the latent gets uniform noise of that width, whose
density that same mass is, so the rate is differentiable.

Coding needs a fixed, exactly reproducible table: `CodingTables` holds, per channel, the
integer counts of the values in [lo, hi] where all but `TAIL` of the mass lies, plus an
escape symbol for values outside (sent raw, 16 bits). Counts are computed once in float64
on the CPU and kept with the model, so an encoder and a decoder on other machines or
devices use the same table, never a recomputed one that could differ in the last bit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ocog_lib.errors import InputError

FILTERS = (3, 3, 3)
LIKELIHOOD_FLOOR = 1e-9
TAIL = 1e-6  # mass left to the escape symbol at each end of a channel's table
TABLE_RANGE = 512  # a table covers at most [-512, 512]; farther values are escaped
COUNT_BITS = 16  # each table's counts sum to about 2**16, every count at least 1


class FactorizedDensity(nn.Module):
    """Per-channel learned CDFs of the latents; `likelihood` of noisy or rounded ones."""

    def __init__(self, channels: int, init_scale: float = 10.0):
        super().__init__()
        self.channels = channels
        dims = (1, *FILTERS, 1)
        scale = init_scale ** (1 / (len(dims) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(dims) - 1):
            init = float(np.log(np.expm1(1 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(dims) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(C, 1, n) values -> (C, 1, n) logits of their CDF (monotone in x)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases, strict=True)):
            x = torch.matmul(F.softplus(m.to(x.dtype)), x) + b.to(x.dtype)
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i].to(x.dtype)) * torch.tanh(x)
        return x

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(value in [y - 1/2, y + 1/2]) per element of (B, C, h, w) latents, floored."""
        if y.ndim != 4 or y.shape[1] != self.channels:
            raise InputError(f"latents {tuple(y.shape)}", f"expected (B, {self.channels}, h, w)")
        v = y.float().transpose(0, 1).reshape(self.channels, 1, -1)
        lower, upper = self.logits(v - 0.5), self.logits(v + 0.5)
        # the difference of sigmoids on the side where they are not both near 1 (stable)
        sign = -torch.sign(lower + upper).detach()
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = p.reshape(self.channels, y.shape[0], *y.shape[2:]).transpose(0, 1)
        return torch.clamp(p, min=LIKELIHOOD_FLOOR)

    def bits(self, y: torch.Tensor) -> torch.Tensor:
        """-log2 of the likelihood, summed: the ideal code length in bits."""
        return -torch.log2(self.likelihood(y)).sum()


@dataclass(frozen=True)
class CodingTables:
    """What the range coder models each channel with: counts of lo..hi, then the escape."""

    lo: np.ndarray  # int32 (C,): the value of each table's first symbol
    counts: np.ndarray  # int64 (C, L): counts of lo..lo+len-1, the escape at index len
    lengths: np.ndarray  # int32 (C,): values each table covers (escape not counted)
    key: str  # the codec id the tables were computed for

    def probabilities(self, c: int) -> np.ndarray:
        """float64 table of channel c (values, then escape): what constriction is given."""
        return self.counts[c, : self.lengths[c] + 1].astype(np.float64)

    def to_dict(self) -> dict:
        return dict(lo=self.lo, counts=self.counts, lengths=self.lengths, key=self.key)

    @staticmethod
    def from_dict(d: dict) -> CodingTables:
        return CodingTables(np.asarray(d["lo"], np.int32), np.asarray(d["counts"], np.int64),
                            np.asarray(d["lengths"], np.int32), str(d["key"]))  # fmt: skip


def integer_pmf(density: FactorizedDensity, r: int = TABLE_RANGE) -> np.ndarray:
    """float64 (C, 2r + 1) mass of each integer -r..r per channel, on the CPU."""
    model = copy.deepcopy(density).cpu().double()  # the caller's stays where it is
    with torch.no_grad():
        v = torch.arange(-r, r + 1, dtype=torch.float64).expand(density.channels, 1, -1)
        upper, lower = model.cdf(v + 0.5), model.cdf(v - 0.5)
    return (upper - lower).squeeze(1).clamp(min=0).numpy()


def build_tables(density: FactorizedDensity, key: str) -> CodingTables:
    """Integer tables of where all but 2 x TAIL of each channel's mass lies, plus escape."""
    pmf = integer_pmf(density)
    r = (pmf.shape[1] - 1) // 2
    cum = np.cumsum(pmf, axis=1)
    total = cum[:, -1:]
    first = np.argmax(cum > TAIL, axis=1)
    last = pmf.shape[1] - 1 - np.argmax((total - cum + pmf)[:, ::-1] > TAIL, axis=1)
    last = np.maximum(last, first)
    lengths = (last - first + 1).astype(np.int32)
    scale = 2**COUNT_BITS - lengths.max() - 1
    counts = np.zeros((density.channels, lengths.max() + 1), dtype=np.int64)
    for c in range(density.channels):
        inside = pmf[c, first[c] : last[c] + 1]
        escape = max(1.0 - inside.sum(), TAIL)
        p = np.append(inside, escape) / (inside.sum() + escape)
        counts[c, : lengths[c] + 1] = np.floor(p * scale).astype(np.int64) + 1
    return CodingTables((first - r).astype(np.int32), counts, lengths, key)
