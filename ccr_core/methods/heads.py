"""Trainable pieces shared by the methods: masked pooling, NRCCR's mapping head, a token projection with
learned positions, one BERT-style attention layer, the temporal encoder for video frames, and the
visual tower every method uses (pooled image feature or frame sequence → joint space)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ccr_core.methods.base import MethodConfig


@dataclass
class EncoderConfig(MethodConfig):
    """Widths of the shared heads; every method's config subclasses this."""

    hidden_dim: int = 512  # width of the attention towers (NRCCR: 1024 over mBERT's 768; ours are smaller)
    num_heads: int = 8  # attention heads in every attention layer (NRCCR: 8); must divide hidden_dim
    attention_dropout: float = 0.1  # dropout inside the towers: input projection, positions, attention (NRCCR: 0.1)
    max_text_tokens: int = 256  # learned text position embeddings (NRCCR: 250); longer captions are refused
    max_frames: int = 80  # learned frame position embeddings of the temporal encoder (NRCCR: 80)
    video: bool = True  # build the temporal encoder (the trainer turns it off for worlds without video)
    # "native": the method's own towers (the "as published" setting); "linear" / "mlp": the floor's heads for
    # every method -- e5 sentence embedding and pooled visual feature, one linear map (or a small MLP) each --
    # so that methods differ only in their objective (the "common encoder" setting, docs/methods.md §8)
    head: str = "native"


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real positions of each sequence: (B, L, D), (B, L) bool -> (B, D)."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, L, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, D)


_MASK_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


def dropout_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An inverted-dropout mask on the CPU: each element independently 0 with probability ``p`` and
    ``1 / (1 - p)`` otherwise, ``shape`` and ``dtype`` (float32 or float64), ``0 < p < 1``.

    ``torch.bernoulli_`` draws a CPU mask at ~7 ns per element; this draws 32 random bits per element from
    numpy's PCG64 (~1 ns) and keeps an element when they are >= round(p * 2**32) (a drop probability within
    2**-33 of ``p``, finer than a float32 uniform), seeding PCG64 from torch's default generator, so
    ``torch.manual_seed`` (and saving / restoring torch's random state) fixes the masks as it fixed
    ``bernoulli_``'s. The masks differ from ``F.dropout``'s for the same seed (another random stream)."""
    with torch.profiler.record_function("ccr::dropout_mask"):  # profiles name its time (numpy's is no aten op)
        n = math.prod(shape)
        seed = int(torch.randint(0, 2**63 - 1, ()))  # one draw from torch's generator per mask
        bits = np.random.PCG64(seed).random_raw((n + 1) // 2).view(np.uint32)[:n]  # (n,) uniform 32-bit integers
        keep = bits >= np.uint32(min(round(p * 2**32), 2**32 - 1))  # (n,) bool, True with probability 1 - p
        np_dtype = _MASK_DTYPES[dtype]
        return torch.from_numpy(np.multiply(keep, np_dtype(1.0 / (1.0 - p)), dtype=np_dtype)).view(shape)


def _fast_dropout_applies(x: torch.Tensor, p: float, training: bool) -> bool:
    """Whether :func:`dropout_mask` serves this dropout (CPU, float32/64, 0 < p < 1, training); else F.dropout."""
    return training and 0.0 < p < 1.0 and x.device.type == "cpu" and x.dtype in _MASK_DTYPES


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with its CPU mask drawn by :func:`dropout_mask`: the same distribution (each element
    dropped independently with probability p, the kept ones scaled by 1 / (1 - p)), one product forward and
    one backward (``x * mask``; autograd multiplies the gradient by the same mask). Elsewhere (GPU, other
    dtypes, eval) it is ``nn.Dropout``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _fast_dropout_applies(x, self.p, self.training):
            return super().forward(x)
        return x * dropout_mask(tuple(x.shape), self.p, x.dtype)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Every ``nn.Dropout`` under ``module`` becomes a :class:`FastDropout` of the same p, and every
    :class:`AttentionLayer` drops its attention probabilities with :func:`dropout_mask` (same placement:
    after the softmax, before the product with the values); returns ``module``."""
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, FastDropout(child.p, child.inplace))
        if isinstance(parent, AttentionLayer):
            parent.fast_dropout = True
    return module


class MappingHead(nn.Module):
    """NRCCR's mapping into the joint space: Linear → BatchNorm1d → Dropout → L2 normalisation."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.2):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.norm = nn.BatchNorm1d(out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.norm(self.linear(x)))  # (B, E)
        return F.normalize(x, dim=-1)  # (B, E)


class PooledTextHead(nn.Module):
    """The simple text head: masked mean of the backbone token states → mapping head."""

    def __init__(self, text_dim: int, embed_dim: int, dropout: float = 0.2):
        super().__init__()
        self.mapping = MappingHead(text_dim, embed_dim, dropout)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.mapping(masked_mean(states, mask))  # (B, L, Dt) -> (B, E)


class TokenProjection(nn.Module):
    """Per-token input layer of NRCCR's towers: LayerNorm → Dropout → Linear → ReLU, then learned
    position embeddings added and LayerNorm → Dropout (the code's LinearLayer + TrainablePositionalEncoding)."""

    def __init__(self, in_dim: int, hidden_dim: int, max_positions: int, dropout: float = 0.1):
        super().__init__()
        self.input_norm = nn.LayerNorm(in_dim)
        self.linear = nn.Linear(in_dim, hidden_dim)
        self.positions = nn.Embedding(max_positions, hidden_dim)
        self.output_norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_length(x.shape[1])
        return self._project(x, self.positions.weight[: x.shape[1]])  # (B, L, Din) -> (B, L, H)

    def packed(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The same layer on real tokens only: x (N, Din) with each token's position (N,) -> (N, H)."""
        if positions.numel():
            self._check_length(int(positions.max()) + 1)
        return self._project(x, self.positions(positions))  # (N, H)

    def _check_length(self, length: int) -> None:
        if length > self.positions.num_embeddings:
            raise ValueError(f"{length} positions; this tower has {self.positions.num_embeddings} position embeddings")

    def _project(self, x: torch.Tensor, position_embeddings: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.linear(self.dropout(self.input_norm(x))))  # (..., H)
        return self.dropout(self.output_norm(h + position_embeddings))  # (..., H)


@dataclass
class Packing:
    """Where the real tokens of several text batches sit: batch ``i``'s real tokens are rows
    ``tokens(i)`` of one (N, D) tensor (or the (n_i, D) tensor of :func:`pack_parts`), in row-major order of
    its (B_i, L_i) mask. Token-wise layers (projections, LayerNorm) then run on real tokens only, with no
    padding; attention runs per batch on its own padded (B_i, L_i) layout (no batch is padded to another's length)."""

    masks: list  # (B_i, L_i) bool per batch
    local: list  # (n_i,) index of each real token in its batch's flattened (B_i * L_i) layout
    pos: torch.Tensor  # (N,) position of each real token in its sequence
    seq: torch.Tensor  # (N,) sequence of each real token, counting the batches' sequences in order
    starts: list  # first token (in the N) of each batch, and N at the end

    def tokens(self, i: int) -> slice:
        """The real tokens of batch ``i`` in the (N, ...) layout."""
        return slice(self.starts[i], self.starts[i + 1])

    def sizes(self, first: int = 0, last: int | None = None) -> list[int]:
        """Real-token counts n_i of batches ``first`` to ``last`` (exclusive; default: to the end)."""
        last = len(self.masks) if last is None else last
        return [self.starts[i + 1] - self.starts[i] for i in range(first, last)]

    def split(self, x: torch.Tensor, first: int = 0, last: int | None = None) -> tuple[torch.Tensor, ...]:
        """The rows of batches ``first`` to ``last`` (exclusive) of an (n_first + ... , ...) tensor, one view per
        batch. Unlike one ``x[tokens(i)]`` per batch, whose backward each fills a zero gradient of all of ``x``,
        the pieces' backward is one concatenation."""
        return x.split(self.sizes(first, last))

    def pad(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Batch ``i``'s (n_i, H) real tokens -> (B_i, L_i, H), zeros at padding."""
        b, length = self.masks[i].shape
        return x.new_zeros(b * length, x.shape[1]).index_copy(0, self.local[i], x).view(b, length, x.shape[1])

    def pad_heads(self, x: torch.Tensor, i: int, parts: int, num_heads: int) -> list[torch.Tensor]:
        """Batch ``i``'s (n_i, parts * H) real tokens -> ``parts`` contiguous attention-head tensors
        (B_i, nh, L_i, H / nh), zeros at padding: ``pad`` then heads, written in one scatter (no transposing copy)."""
        b, length = self.masks[i].shape
        n = x.shape[0]
        out = x.new_zeros(parts, b, num_heads, length, x.shape[1] // (parts * num_heads))  # (parts, B_i, nh, L_i, dh)
        out[:, self.local[i] // length, :, self.local[i] % length] = x.view(n, parts, num_heads, -1)  # (n_i, parts, nh, dh)
        return list(out.unbind(0))

    def unpad(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """(B_i, L_i, H) -> batch ``i``'s (n_i, H) real tokens."""
        return x.reshape(-1, x.shape[-1]).index_select(0, self.local[i])

    def sums(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Per-sequence sums of batch ``i``'s real tokens (n_i, H) -> (B_i, H)."""
        first = sum(int(m.shape[0]) for m in self.masks[:i])
        return x.new_zeros(self.masks[i].shape[0], x.shape[1]).index_add(0, self.seq[self.tokens(i)] - first, x)

    def counts(self, i: int) -> torch.Tensor:
        return self.masks[i].sum(dim=1, keepdim=True).clamp(min=1)  # (B_i, 1)

    def mean(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Masked mean of batch ``i``'s sequences from its (n_i, H) real tokens -> (B_i, H)."""
        return self.sums(x, i) / self.counts(i)


def pack(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, Packing]:
    """Real tokens of several (states (B_i, L_i, D), mask (B_i, L_i)) batches -> (N, D) and their :class:`Packing`."""
    rows, packing = pack_parts(batches)
    return torch.cat(rows), packing


def pack_parts(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], Packing]:
    """:func:`pack` without the concatenation: each batch's real tokens (n_i, D), and their :class:`Packing`."""
    rows, seqs, poss, masks, local, starts = [], [], [], [], [], [0]
    offset = 0
    for states, mask in batches:
        mask = mask.to(torch.bool)
        where = mask.nonzero()  # (n_i, 2): (sequence, position), row-major
        rows.append(states[mask])  # (n_i, D), same order
        seqs.append(where[:, 0] + offset)
        poss.append(where[:, 1])
        masks.append(mask)
        local.append(where[:, 0] * mask.shape[1] + where[:, 1])
        starts.append(starts[-1] + int(where.shape[0]))
        offset += int(mask.shape[0])
    return rows, Packing(masks, local, torch.cat(poss), torch.cat(seqs), starts)


class AttentionLayer(nn.Module):
    """One multi-head attention layer with no feed-forward (NRCCR's ``BertAttention``): attention, an
    output Linear, Dropout, then LayerNorm of (output + query) — or of the output alone when
    ``residual=False``, as NRCCR does for its cross-attention pseudo-target."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float = 0.1):
        super().__init__()
        if hidden_dim % num_heads:
            raise ValueError(f"hidden_dim {hidden_dim} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.query = nn.Linear(hidden_dim, hidden_dim)
        self.key = nn.Linear(hidden_dim, hidden_dim)
        self.value = nn.Linear(hidden_dim, hidden_dim)
        self.output = nn.Linear(hidden_dim, hidden_dim)
        self.norm = nn.LayerNorm(hidden_dim)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = dropout
        self.fast_dropout = False  # use_fast_dropout(): attention probabilities dropped with dropout_mask

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)  # (B, nh, L, dh)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor, residual: bool = True
    ) -> torch.Tensor:
        """query (B, Lq, H) attends over context (B, Lk, H) with context_mask (B, Lk) bool -> (B, Lq, H)."""
        q, k, v = self.heads(self.query(query)), self.heads(self.key(context)), self.heads(self.value(context))
        return self.finish(self.attend(q, k, v, context_mask), query if residual else None)  # (B, Lq, H)

    # -- the pieces of forward, also called one by one on packed tokens (NRCCR's tower) ---------------
    def project(self, x: torch.Tensor, which: str = "qkv", stacked: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Any of the query/key/value projections of (N, H) tokens in one matrix product: (N, len(which) * H).
        ``stacked``: ``self.stacked(which)``, computed once for several calls."""
        return F.linear(x, *(stacked or self.stacked(which)))

    def stacked(self, which: str = "qkv") -> tuple[torch.Tensor, torch.Tensor]:
        """The weights and biases of the ``which`` projections stacked: (len(which) * H, H), (len(which) * H,)."""
        layers = [{"q": self.query, "k": self.key, "v": self.value}[w] for w in which]
        if len(layers) == 1:
            return layers[0].weight, layers[0].bias
        return torch.cat([l.weight for l in layers]), torch.cat([l.bias for l in layers])

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention of (S, nh, Lq, dh) queries over keys with key_mask (S, Lk) -> (S, Lq, H)."""
        drop = self.attention_dropout if self.training else 0.0
        if self.fast_dropout and _fast_dropout_applies(q, drop, self.training):
            # scaled_dot_product_attention's own path with dropout on a CPU (its math path), with the mask drawn
            # by dropout_mask: softmax(q k^T / sqrt(dh), real keys only), dropout, times v
            s, nh, lq, dh = q.shape
            bias = q.new_zeros(key_mask.shape).masked_fill_(~key_mask.to(torch.bool), float("-inf"))  # (S, Lk)
            bias = bias[:, None, None, :].expand(s, nh, 1, -1).reshape(s * nh, 1, -1)  # (S * nh, 1, Lk)
            scores = torch.baddbmm(bias, q.reshape(s * nh, lq, dh), k.reshape(s * nh, -1, dh).transpose(1, 2), alpha=dh ** -0.5)
            attn = torch.softmax(scores, dim=-1)  # (S * nh, Lq, Lk)
            out = torch.bmm(attn * dropout_mask(tuple(attn.shape), drop, attn.dtype), v.reshape(s * nh, -1, dh)).view(s, nh, lq, dh)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask.to(torch.bool)[:, None, None, :], dropout_p=drop)
        return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)  # (S, Lq, H)

    def finish(self, out: torch.Tensor, query: torch.Tensor | None) -> torch.Tensor:
        """Output Linear, Dropout, LayerNorm of (output + query), or of the output alone when query is None."""
        out = self.dropout(self.output(out))
        return self.norm(out + query) if query is not None else self.norm(out)


class TemporalEncoder(nn.Module):
    """Video frames → one vector: token projection with learned frame positions, one self-attention
    layer, masked mean pooling (NRCCR's VATEX video tower, with a single layer)."""

    def __init__(self, visual_dim: int, hidden_dim: int, num_heads: int, max_frames: int, dropout: float = 0.1):
        super().__init__()
        self.project = TokenProjection(visual_dim, hidden_dim, max_frames, dropout)
        self.attention = AttentionLayer(hidden_dim, num_heads, dropout)

    def forward(self, frames: torch.Tensor, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        if frame_mask is None:
            frame_mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)  # (B, T)
        limit = self.project.positions.num_embeddings
        if frames.shape[1] > limit:  # more frames than position embeddings: sample them uniformly
            keep = torch.linspace(0, frames.shape[1] - 1, limit, device=frames.device).round().long()  # (T',)
            frames, frame_mask = frames[:, keep], frame_mask[:, keep]  # (B, T', Dv), (B, T')
        h = self.project(frames)  # (B, T, H)
        h = self.attention(h, h, frame_mask)  # (B, T, H)
        return masked_mean(h, frame_mask)  # (B, H)


class VisualTower(nn.Module):
    """Frozen visual feature → joint space. Images: Linear → mapping head (NRCCR's CLIP image tower).
    Videos (``frames`` given): the temporal encoder replaces the Linear. A batch is all images or all
    videos, so only one of the two branches receives gradient in a step."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        c = config
        self.image_proj = nn.Linear(c.visual_dim, c.hidden_dim)
        # The temporal encoder is most of a method's parameters; image-only worlds do without it.
        self.temporal = TemporalEncoder(c.visual_dim, c.hidden_dim, c.num_heads, c.max_frames, c.attention_dropout) if c.video else None
        self.mapping = MappingHead(c.hidden_dim, c.embed_dim, c.dropout)

    def forward(
        self, visual: torch.Tensor, frames: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if frames is not None and self.temporal is None:
            raise ValueError("this model was trained without video (config video=False) and cannot encode frame sequences")
        h = self.image_proj(visual) if frames is None else self.temporal(frames, frame_mask)  # (B, H)
        return self.mapping(h)  # (B, E)


def encode_batch_visual(method, batch: dict) -> torch.Tensor:
    """``method.encode_visual`` on a batch dict, passing frames when the batch holds video."""
    return method.encode_visual(batch["visual"], batch.get("frames"), batch.get("frame_mask"))


HEADS = ("native", "linear", "mlp")


def _map(in_dim: int, out_dim: int, kind: str, hidden_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class SentenceTextHead(nn.Module):
    """The floor's text head: e5's sentence embedding (L2-normalised mean of the token states) through
    one linear map (or a one-hidden-layer MLP), L2-normalised."""

    def __init__(self, text_dim: int, embed_dim: int, kind: str = "linear", hidden_dim: int = 512):
        super().__init__()
        self.map = _map(text_dim, embed_dim, kind, hidden_dim)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.from_mean(masked_mean(states, mask))  # (B, L, Dt) -> (B, E)

    def from_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The head on an already computed ``masked_mean(states, mask)`` (B, Dt) -> (B, E)."""
        return F.normalize(self.map(F.normalize(mean, dim=-1)), dim=-1)  # (B, E)


class FeatureVisualHead(nn.Module):
    """The floor's visual head: the pooled feature (a video: the mean of its frame features, no temporal
    model) through one linear map (or a one-hidden-layer MLP), L2-normalised."""

    def __init__(self, visual_dim: int, embed_dim: int, kind: str = "linear", hidden_dim: int = 512):
        super().__init__()
        self.map = _map(visual_dim, embed_dim, kind, hidden_dim)

    def forward(self, visual: torch.Tensor, frames: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        if frames is not None:
            if frame_mask is None:
                frame_mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)  # (B, T)
            visual = masked_mean(frames, frame_mask)  # (B, Dv)
        return F.normalize(self.map(visual), dim=-1)  # (B, E)


def _check_head(config: EncoderConfig) -> None:
    if config.head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {config.head!r}")


def make_text_head(config: EncoderConfig) -> nn.Module:
    """The pooled text head of baseline, CL2CM, UML and 1-to-K: their own (``head="native"``) or the floor's."""
    _check_head(config)
    if config.head == "native":
        return PooledTextHead(config.text_dim, config.embed_dim, config.dropout)
    return SentenceTextHead(config.text_dim, config.embed_dim, config.head, config.hidden_dim)


def make_visual_head(config: EncoderConfig) -> nn.Module:
    """The visual tower (``head="native"``) or the floor's visual head."""
    _check_head(config)
    if config.head == "native":
        return VisualTower(config)
    return FeatureVisualHead(config.visual_dim, config.embed_dim, config.head, config.hidden_dim)
