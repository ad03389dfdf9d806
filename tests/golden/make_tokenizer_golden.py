#!/usr/bin/env python3
"""Writes tests/data/tokenizer_smollm2.json: reference token ids for SmolLM2's tokenizer,
which tests/test_tokenizer.cpp compares kvlm's byte-level BPE against.

    /path/to/python tests/golden/make_tokenizer_golden.py weights/SmolLM2-135M-Instruct.Q4_1.gguf

Needs: gguf, tokenizers, transformers (pip install gguf tokenizers transformers torch).

The reference is built with Hugging Face `tokenizers` directly from the GGUF's vocabulary
and merges, with the pipeline of SmolLM2's own tokenizer.json: the pre-tokenizer
Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False)], a
ByteLevel decoder and the control tokens as special added tokens. Nothing of kvlm is used.

transformers can also build a tokenizer from a GGUF file (AutoTokenizer with gguf_file);
the script compares it with the explicit one on every string and prints the differences.
Its GGUF converter uses a plain ByteLevel pre-tokenizer for every `gpt2` vocabulary and
ignores tokenizer.ggml.pre, so it misses SmolLM2's digit split. That matters only where a
digit follows spaces or a non-ASCII number: SmolLM2 has no merges into digits, so most
numbers come out the same ("a  1": explicit [81, 256, 33], transformers [81, 216, 216, 33]). The GGUF's own metadata
says `smollm` (llama.cpp's name for exactly "each \\p{N} alone, then the GPT-2 pattern",
chosen by its converter because SmolLM2's tokenizer.json produced those splits), so the
explicit tokenizer is the one that matches the model, and it is the one recorded.
"""
import importlib.metadata
import json
import os
import platform
import sys
import tempfile

import gguf
import tokenizers
import transformers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

CONTROL = 3
USER_DEFINED = 4

# A varied set: scripts, emoji, code, numbers, whitespace shapes, contractions, special
# tokens in text, and strings that look like escapes or byte-level token text.
CASES = [
    "",
    " ",
    "  ",
    "\n",
    "Hello world",
    "Hello world's 12345",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing space ",
    "   three leading and three trailing   ",
    "don't, won't, can't; I'M here, you'RE there, we'll see, they've gone, he'd go, it's",
    "DON'T 'S 'T 'Re 've 'LL 'D 'm",
    "it’s a curly apostrophe",
    "'s at the start, and a lone ' quote",
    "Café, naïve, résumé, jalapeño, Øresund, Ærø, Łódź",
    "Straße, Größe, Mädchen, schön. Ça va? Où est l'hôtel? Noël à Paris.",
    "e\u0301 (e + combining acute) vs é",
    "日本語のテキストです。東京は大きい都市です。",
    "中文测试：你好，世界！",
    "한국어 문장입니다. 안녕하세요!",
    "مرحبا بالعالم، هذا نص عربي.",
    "Привет, мир! Ελληνικά κείμενα.",
    "हिन्दी में लिखा पाठ",
    "ภาษาไทยไม่มีช่องว่าง",
    "Emoji: 😀😃😄 👍🏽 ❤️ 🎉",
    "Family: 👨‍👩‍👧‍👦 and 👩🏾‍💻 together",
    "Flags: 🇫🇷🇩🇪🇯🇵 🏴‍☠️",
    "def f(x):\n\tif x > 0:\n\t\treturn x * 2\n\treturn -x\n",
    "class Foo {\n    int bar() const { return 42; }\n};\n",
    "    four spaces\n        eight spaces\n",
    "\t\ttwo tabs",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "x=1;y=2;z=x+y",
    "0",
    "1234567890",
    "3.14159",
    "π ≈ 3.14159265358979323846",
    "1,000,000 and 1.000.000 and 1 000 000",
    "Call 555-0123 or +1 (800) 555-0199 before 2024-12-31 23:59:59",
    "12abc34def56",
    "Arabic-Indic ٣٤٥ and full-width １２３",
    "Superscript x² y³, fraction ½ ¾, Roman Ⅻ",
    "a  1",
    "a\n1",
    "word    word",
    "word\n\n\nword",
    "line one\r\nline two\r\n",
    "\r\n",
    "\n\n\n",
    "   \n   \n   ",
    "spaces at end   ",
    "tab\tseparated\tvalues",
    "mixed \t \n whitespace",
    "no-break\u00a0space and ideographic\u3000space",
    "line\u2028separator and NEL\u0085here",
    "unit separator \x1f and file separator \x1c",
    "control \x00 \x01 \x7f chars",
    "!\x04! and ..\x13.. (bytes that SmolLM2 has no token for)",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|><|im_end|>",
    "text<|endoftext|>more text",
    "x<file_sep>y<repo_name>z",
    "<|im_start",
    "<|im_end|",
    "<<|im_end|>>",
    "<|IM_END|>",
    "<|im_start |>",
    "\\u00e9 \\n \\x41 &amp; &#233; %E2%82%AC",
    "ĠĊ ġ Ā and Ġhello",
    "\ufffd replacement char",
    "\uffff noncharacter, \ue000 private use, \U0010fffd plane 16",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 mathematical letters 𝟙𝟚𝟛",
    "".join(chr(i) for i in range(1, 256)),
    "!!!??? ... --- ***",
    "https://example.com/path?query=1&b=two#frag",
    "user@example.com",
    "CamelCaseWord snake_case_word kebab-case-word",
    "ALL CAPS SENTENCE WITH NUMBERS 42",
]

LONG_TEXT = (
    "Tokenizers turn text into integers. A byte-level BPE starts from the 256 byte values "
    "and repeatedly merges the most frequent adjacent pair seen in training; at inference "
    "the merges are replayed in the order they were learned. SmolLM2 was trained on 11 "
    "trillion tokens (roughly 2e13 bytes) of web text, code and math.\n\n"
    "    def tokenize(text):\n        return [vocab[p] for p in split(text)]\n\n"
    "Prices: $19.99, €5,00, ¥1000. Temperatures: -40°C = -40°F. Ratios: 3:2, 16:9.\n"
    "Mixed: naïve café — “quoted” ‘text’ … ellipsis • bullet → arrow ✓ check.\n"
)


def read_vocab(path):
    reader = gguf.GGUFReader(path)

    def field(name):
        return reader.fields[name].contents()

    return {
        "tokens": field("tokenizer.ggml.tokens"),
        "types": field("tokenizer.ggml.token_type"),
        "merges": field("tokenizer.ggml.merges"),
        "model": field("tokenizer.ggml.model"),
        "pre": field("tokenizer.ggml.pre"),
    }


def explicit_tokenizer(vocab):
    """SmolLM2's tokenizer.json pipeline, rebuilt from the GGUF's vocabulary."""
    token_ids = {text: i for i, text in enumerate(vocab["tokens"])}
    merges = [tuple(m.split(" ")) for m in vocab["merges"]]
    tok = Tokenizer(models.BPE(vocab=token_ids, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(text, special=True, normalized=False)
                for text, kind in zip(vocab["tokens"], vocab["types"])
                if kind in (CONTROL, USER_DEFINED)]
    tok.add_special_tokens(specials)
    return tok


def transformers_tokenizer(gguf_path):
    directory, name = os.path.split(os.path.abspath(gguf_path))
    return transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)


def main():
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else "weights/SmolLM2-135M-Instruct.Q4_1.gguf"
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data", "tokenizer_smollm2.json")

    vocab = read_vocab(gguf_path)
    reference = explicit_tokenizer(vocab)
    hf_gguf = transformers_tokenizer(gguf_path)

    texts = CASES + [LONG_TEXT]
    cases, disagreements = [], []
    for text in texts:
        ids = reference.encode(text, add_special_tokens=False).ids
        case = {"text": text, "ids": ids}
        # Bytes without a single-byte token are dropped, so such texts do not come back.
        decoded = reference.decode(ids, skip_special_tokens=False)
        if decoded != text:
            case["decoded"] = decoded
        other = hf_gguf.encode(text, add_special_tokens=False)
        if other != ids:
            disagreements.append({"text": text, "explicit": ids, "transformers_gguf": other})
        cases.append(case)

    print(f"{len(texts)} strings; transformers' GGUF tokenizer agrees with the explicit "
          f"one on {len(texts) - len(disagreements)}, differs on {len(disagreements)}")
    for d in disagreements:
        print(f"  {d['text']!r}\n    explicit     {d['explicit']}\n"
              f"    transformers {d['transformers_gguf']}")

    golden = {
        "about": "Reference ids for kvlm's tokenizer tests; regenerate with "
                 "tests/golden/make_tokenizer_golden.py. ids: encode(text) with special "
                 "tokens parsed and no bos; decoded: decode(ids), only where it is not text.",
        "model_file": os.path.basename(gguf_path),
        "tokenizer": {"model": vocab["model"], "pre": vocab["pre"],
                      "n_tokens": len(vocab["tokens"]), "n_merges": len(vocab["merges"])},
        "reference": "tokenizers BPE from the GGUF vocabulary and merges; pre-tokenizer "
                     "Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space="
                     "False, use_regex=True)]; control tokens added as special tokens",
        "versions": {"python": platform.python_version(), "tokenizers": tokenizers.__version__,
                     "transformers": transformers.__version__,
                     "gguf": importlib.metadata.version("gguf")},
        # transformers' own GGUF tokenizer (no digit split), where it differs from the above.
        "transformers_gguf_differs_on": [d["text"] for d in disagreements],
        "cases": cases,
    }
    # One case per line keeps the file small and its diffs readable.
    with open(out_path, "w", encoding="utf-8") as f:
        body = json.dumps({k: v for k, v in golden.items() if k != "cases"},
                          ensure_ascii=False, indent=1)
        f.write(body[:-2] + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n ]\n}\n")
    json.load(open(out_path, encoding="utf-8"))  # the hand-joined file must still parse
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
