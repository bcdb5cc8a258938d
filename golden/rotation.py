"""Offline rotations folded into a Llama's weights, so 4-bit activations lose less (QuaRot's R1 and R2).

The residual stream is rotated by one orthogonal R1 [H, H]: the embedding's
rows become ``e·R1``, every projection that reads the residual (q, k, v,
gate, up and the LM head) becomes ``W·diag(g)·R1`` with the RMSNorm scale
``g`` before it folded in (the norms keep a weight of ones, and an RMSNorm
without a scale commutes with a rotation: ``‖x·R‖ = ‖x‖``), and every
projection that writes it (o_proj, down_proj) becomes ``R1ᵀ·W``. Each
attention head's values are rotated by R2 [d, d]: v_proj's rows of a head
become ``R2ᵀ·W_h`` and o_proj's columns of that head ``W_h·R2``. In exact
arithmetic the network computes the same function; what changes is what the
projections see: a rotated activation vector spreads an outlier channel over
all channels, so a per-token 4-bit step fits it better.

The tile is not involved: it gets ordinary weight codes of rotated weights.
Nothing is computed online (no rotation between projections at run time).

A rotation is a Hadamard matrix where one can be built exactly (±1 entries,
scaled by 1/√n; random signs on its rows, seeded): orders 2^k·m with
m = 1 or a Paley order (q + 1 for a prime q ≡ 3 mod 4, 2(q + 1) for
q ≡ 1 mod 4). SmolLM2's hidden size 576 = 16·36 and head size 64 both have
one; so do Llama-2-7B's 4096 and 128. Any other order gets a seeded random
orthogonal matrix (QR of a Gaussian), whose last bits can depend on the CPU.
"""

from __future__ import annotations

import hashlib
import random

import torch

from spikeacc.config import ROTATIONS

__all__ = ["Rotation", "hadamard", "rotation_matrix", "check_rotation"]

READERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
WRITERS = ("self_attn.o_proj", "mlp.down_proj")
NORM_OF = {"self_attn.q_proj": "input_layernorm", "self_attn.k_proj": "input_layernorm",
           "self_attn.v_proj": "input_layernorm", "mlp.gate_proj": "post_attention_layernorm",
           "mlp.up_proj": "post_attention_layernorm"}


def check_rotation(name) -> str:
    if name not in ROTATIONS:
        raise ValueError(f"rotation must be one of {list(ROTATIONS)}, got {name!r}")
    return name


def _is_prime(q: int) -> bool:
    return q >= 2 and all(q % d for d in range(2, int(q ** 0.5) + 1))


def _jacobsthal(q: int) -> torch.Tensor:
    squares = {(x * x) % q for x in range(1, q)}
    chi = [0] + [1 if a in squares else -1 for a in range(1, q)]
    return torch.tensor([[chi[(j - i) % q] for j in range(q)] for i in range(q)], dtype=torch.float64)


def _paley(m: int) -> torch.Tensor | None:
    """A Hadamard matrix of order m by Paley's constructions, or None."""
    q = m - 1
    if _is_prime(q) and q % 4 == 3:                       # Paley I: I + S, S skew
        s = torch.zeros(m, m, dtype=torch.float64)
        s[0, 1:], s[1:, 0], s[1:, 1:] = 1, -1, _jacobsthal(q)
        return torch.eye(m, dtype=torch.float64) + s
    q = m // 2 - 1
    if m % 2 == 0 and _is_prime(q) and q % 4 == 1:          # Paley II: C symmetric conference matrix
        c = torch.zeros(q + 1, q + 1, dtype=torch.float64)
        c[0, 1:], c[1:, 0], c[1:, 1:] = 1, 1, _jacobsthal(q)
        zero = torch.tensor([[1.0, -1.0], [-1.0, -1.0]], dtype=torch.float64)
        one = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        return torch.kron(c, one) + torch.kron((c == 0).to(torch.float64), zero)
    return None


def hadamard(n: int) -> torch.Tensor | None:
    """A ±1 Hadamard matrix of order n (H·Hᵀ = n·I), or None when none of the constructions here reach n."""
    for m in range(1, n + 1):
        k = n // m
        if n % m or k & (k - 1):
            continue
        base = torch.ones(1, 1, dtype=torch.float64) if m == 1 else _paley(m)
        if base is None:
            continue
        h = base
        two = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        while h.shape[0] < n:
            h = torch.kron(two, h)
        if not torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64)):
            raise AssertionError(f"the Hadamard construction of order {n} is wrong")
        return h
    return None


def rotation_matrix(n: int, seed: int) -> tuple[torch.Tensor, str]:
    """An orthogonal [n, n] float64 matrix and how it was made: a signed Hadamard, else random orthogonal."""
    rng = random.Random(f"{seed}:{n}")        # integer draws: the same on every CPU
    signs = torch.tensor([rng.choice((-1.0, 1.0)) for _ in range(n)], dtype=torch.float64)
    h = hadamard(n)
    if h is not None:
        return signs[:, None] * h / n ** 0.5, "hadamard"
    gen = torch.Generator().manual_seed(seed * 1000003 + n)
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=gen))
    return q * torch.sign(torch.diagonal(r))[None, :], "random-orthogonal"


class Rotation:
    """R1 (residual stream) and R2 (per head, values) for one model shape, and how they fold into weights."""

    def __init__(self, hidden: int, head_dim: int, seed: int = 0):
        self.r1, kind1 = rotation_matrix(hidden, seed)
        self.r2, kind2 = rotation_matrix(head_dim, seed + 1)
        self.head_dim = head_dim
        self.kinds = (kind1, kind2)
        self.key = f"hadamard-seed{seed}:" + hashlib.sha256(
            torch.cat([self.r1.reshape(-1), self.r2.reshape(-1)]).numpy().tobytes()).hexdigest()[:16]

    def embedding(self, rows: torch.Tensor) -> torch.Tensor:
        return rows @ self.r1

    def head(self, weight: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """The LM head reading the rotated residual through a final norm of ones."""
        return (weight * norm[None, :]) @ self.r1

    def block(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A decoder block's float64 state dict with the norms folded and R1, R2 applied (a new dict)."""
        if any(k.endswith(".bias") for k in state):
            raise ValueError("rotation of projections with biases is not supported (Llama's have none)")
        state = dict(state)
        for name in READERS:
            key = f"{name}.weight"
            state[key] = (state[key] * state[f"{NORM_OF[name]}.weight"][None, :]) @ self.r1
        for norm in set(NORM_OF.values()):
            state[f"{norm}.weight"] = torch.ones_like(state[f"{norm}.weight"])
        for name in WRITERS:
            key = f"{name}.weight"
            state[key] = self.r1.T @ state[key]
        d = self.head_dim
        v = state["self_attn.v_proj.weight"]                                 # [kv_heads·d, H]
        state["self_attn.v_proj.weight"] = (self.r2.T @ v.reshape(-1, d, v.shape[1])).reshape(v.shape)
        o = state["self_attn.o_proj.weight"]                                 # [H, heads·d]
        state["self_attn.o_proj.weight"] = (o.reshape(o.shape[0], -1, d) @ self.r2).reshape(o.shape)
        return state
