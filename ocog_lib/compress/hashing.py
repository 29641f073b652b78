"""Hash codes from the codec's quantised latents (SCI-CBIR, Sumbul et al. 2022).

The head reads what the bitstream holds, the rounded latents, never decoded pixels:
an archive of bitstreams is indexed and searched with entropy decoding alone
(`codes_from_bitstreams`), the synthesis transform never runs.

Head: per-channel standardisation (BatchNorm: latent channels differ in spread by
orders of magnitude), two 3x3 convolutions, mean- and max-pooled, one linear layer to
K values through tanh (u in (-1, 1)^K); the code is sign(u) (bit 1 where u > 0). A
linear classifier on u serves the label term. Losses, on a batch:
- similarity: (u_i . u_j / K - s_ij)^2 over labelled pairs, s_ij = 1 for the same label
  and 0 otherwise: same label -> Hamming distance near 0, different -> near K/2 (what
  independent codes have; -1 is not reachable by more than two classes at once);
- balance: the mean of u over the batch, squared, per bit: each bit ~50% ones (a bit
  that is always on tells nothing apart);
- classification: cross-entropy of the classifier on u.
Their weights are learned, not searched (Kendall, Gal & Cipolla 2018, homoscedastic
uncertainty): total = sum_t exp(-s_t) L_t + s_t with one learned log-variance s_t per
term; at the optimum exp(-s_t) = 1/L_t, so each term is weighed by its own scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ocog_lib.compress.bitstream import decode_latents
from ocog_lib.compress.codec import Codec
from ocog_lib.compress.hamming import pack_codes
from ocog_lib.embed.vectors import NO_LABEL
from ocog_lib.errors import InputError

TERMS = ("similarity", "balance", "classification")


@dataclass(frozen=True)
class HashSpec:
    latents: int
    bits: int = 64
    width: int = 64
    classes: int = 8

    def to_dict(self) -> dict:
        return asdict(self)


class HashHead(nn.Module):
    """(B, M, h, w) quantised latents -> (u in (-1, 1)^K, class logits)."""

    def __init__(self, spec: HashSpec):
        super().__init__()
        if spec.bits < 8 or spec.bits % 8 or min(spec.latents, spec.width, spec.classes) < 1:
            raise InputError(f"hash head {spec}", "need bits a multiple of 8, sizes >= 1")
        self.spec = spec
        w = spec.width
        self.standardise = nn.BatchNorm2d(spec.latents, affine=False)
        self.features = nn.Sequential(nn.Conv2d(spec.latents, w, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(w, w, 3, padding=1), nn.ReLU())  # fmt: skip
        self.code = nn.Linear(2 * w, spec.bits)
        self.classify = nn.Linear(spec.bits, spec.classes)
        self.log_vars = nn.Parameter(torch.zeros(len(TERMS)))  # Kendall's s_t

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if y.ndim != 4 or y.shape[1] != self.spec.latents:
            raise InputError(f"latents {tuple(y.shape)}",
                             f"expected (B, {self.spec.latents}, h, w)")  # fmt: skip
        f = self.features(self.standardise(y.float()))
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        u = torch.tanh(self.code(pooled))
        return u, self.classify(u)

    def bits(self, y: torch.Tensor) -> np.ndarray:
        """bool (B, K) codes: u > 0."""
        self.eval()
        with torch.no_grad():
            return (self(y)[0] > 0).cpu().numpy()


@dataclass(frozen=True)
class HashLoss:
    total: torch.Tensor
    terms: torch.Tensor  # (3,) the unweighted similarity, balance, classification losses
    weights: torch.Tensor  # (3,) exp(-s_t), detached


def hash_loss(head: HashHead, u: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor
              ) -> HashLoss:  # fmt: skip
    """The three terms of a batch, weighed by the head's learned log-variances."""
    known = labels != NO_LABEL
    zero = u.sum() * 0
    sim = cls = zero
    if int(known.sum()) >= 2:
        uk, lk = u[known], labels[known]
        cos = uk @ uk.T / u.shape[1]
        same = (lk[:, None] == lk[None, :]).float()
        off = ~torch.eye(len(uk), dtype=torch.bool, device=u.device)
        sim = ((cos - same)[off] ** 2).mean()
    if known.any():
        cls = F.cross_entropy(logits[known], labels[known].long())
    balance = (u.mean(0) ** 2).mean()
    terms = torch.stack([sim, balance, cls])
    s = head.log_vars
    return HashLoss((torch.exp(-s) * terms + s).sum(), terms.detach(), torch.exp(-s).detach())


def codes_from_latents(head: HashHead, latents: torch.Tensor, *, batch_size: int = 256
                       ) -> np.ndarray:  # fmt: skip
    """uint8 (n, K/8) packed codes of quantised latents."""
    device = next(head.parameters()).device
    parts = [head.bits(latents[i : i + batch_size].to(device))
             for i in range(0, len(latents), batch_size)]  # fmt: skip
    bits = np.concatenate(parts) if parts else np.zeros((0, head.spec.bits), dtype=bool)
    return pack_codes(bits)


def codes_from_bitstreams(codec: Codec, head: HashHead, bitstreams: Sequence[bytes],
                          shape: tuple[int, ...]) -> np.ndarray:  # fmt: skip
    """Packed codes of an archive's bitstreams: entropy decoding only, no pixels."""
    return codes_from_latents(head, decode_latents(codec, bitstreams, shape))


def codes_from_patches(codec: Codec, head: HashHead, patches: torch.Tensor, *,
                       batch_size: int = 256) -> np.ndarray:  # fmt: skip
    """Packed codes of normalised patches, through the same rounded latents a bitstream
    of them holds."""
    device = next(codec.parameters()).device
    codec.eval()
    with torch.no_grad():
        parts = [codec.encode_latents(patches[i : i + batch_size].to(device)).cpu()
                 for i in range(0, len(patches), batch_size)]  # fmt: skip
    if not parts:
        return np.zeros((0, head.spec.bits // 8), dtype=np.uint8)
    return codes_from_latents(head, torch.cat(parts))
