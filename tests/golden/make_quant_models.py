#!/usr/bin/env python3
"""Tiny Llama GGUFs in every weight type kvlm reads, each with llama.cpp's logits beside it.

    tests/bench/build_llamacpp.sh                 # llama-quantize and the logits dumper
    python3 tests/golden/make_quant_models.py     # tests/data/quant_models/tiny*
    python3 tests/golden/make_quant_models.py --default   # after weights/requantize.sh

Two random-weight models, written in F32 with the gguf package (tokenizer metadata from
tests/data/hf/llama3-gqa.gguf) and converted by llama-quantize so that every matrix, token
embedding included, is the target type:

  tiny64   dim 64, 2 layers, 4 heads / 2 KV heads, ffn 128: the float types and the
           blocks of 32 (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1)
  tiny256  dim 256, 1 layer, 4 heads / 1 KV head, ffn 256: the k-quants, whose rows
           must be whole super-blocks of 256 (Q2_K Q3_K Q4_K Q5_K Q6_K, and llama.cpp's
           Q4_K_M mix, which is Q4_K with Q6_K for attn_v, ffn_down and the embedding)

Both tie the output to the token embedding to save space: the committed files come to
3.6 MB. Every run writes the same bytes (seeded weights, deterministic llama-quantize).

For each model, llama.cpp evaluates PROMPT in one batch: <name>.logits holds float32
[16][vocab] (every position), <name>.greedy the 16 greedy tokens that follow.

--default does the same for the requantised default model (weights/requantize.sh) on the
chat prompt of tests/data/smollm2_golden.json: default/<TYPE>.logits holds the last
DEFAULT_POSITIONS positions as float16 (the vocabulary is 49152), default/<TYPE>.greedy 32
tokens.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests/data/quant_models"
LLAMACPP = ROOT / "build/llamacpp"
QUANTIZE = LLAMACPP / "cmake/bin/llama-quantize"
DUMP_LOGITS = LLAMACPP / "llamacpp_logits"
TOKENIZER_SOURCE = ROOT / "tests/data/hf/llama3-gqa.gguf"

SHAPES = {
    "tiny64": dict(dim=64, layers=2, heads=4, kv_heads=2, ffn=128, seed=64),
    "tiny256": dict(dim=256, layers=1, heads=4, kv_heads=1, ffn=256, seed=256),
}
TYPES = {
    "tiny64": ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"],
    "tiny256": ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q4_K_M"],
}
MIXES = {"Q4_K_M"}  # llama.cpp chooses the type per tensor; the others are --pure
PROMPT = [480, 17, 94, 3, 60, 60, 11, 42, 7, 250, 301, 99, 5, 400, 123, 77]  # 480 is BOS
GREEDY = 16

DEFAULT_TYPES = ["Q4_1", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M"]
DEFAULT_POSITIONS = 3
DEFAULT_GREEDY = 32


def copy_tokenizer(writer, source=TOKENIZER_SOURCE):
    """Copies a GGUF's byte-level BPE tokenizer and chat template; returns the vocabulary size."""
    fields = gguf.GGUFReader(source).fields
    value = lambda key: fields[key].contents()
    writer.add_tokenizer_model(value("tokenizer.ggml.model"))
    writer.add_tokenizer_pre(value("tokenizer.ggml.pre"))
    writer.add_token_list(value("tokenizer.ggml.tokens"))
    writer.add_token_types(value("tokenizer.ggml.token_type"))
    writer.add_token_merges(value("tokenizer.ggml.merges"))
    writer.add_bos_token_id(value("tokenizer.ggml.bos_token_id"))
    writer.add_eos_token_id(value("tokenizer.ggml.eos_token_id"))
    if "tokenizer.ggml.add_bos_token" in fields:
        writer.add_add_bos_token(value("tokenizer.ggml.add_bos_token"))
    writer.add_chat_template(value("tokenizer.chat_template"))
    return len(value("tokenizer.ggml.tokens"))


def write_f32_model(name, path, dim, layers, heads, kv_heads, ffn, seed):
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(256)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(dim // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = copy_tokenizer(writer)

    rng = np.random.default_rng(seed)
    # Each projection keeps the scale of its input, so the layers' outputs outweigh a token's
    # own embedding (rows of norm 1) in the residual stream: with tied embeddings a strong
    # embedding would make every token predict itself. The final norm's weights of about 4
    # give the logits a spread of about 4: distinct greedy choices, no saturated softmax.
    def matrix(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm(scale=1.0):
        return (scale * (1 + 0.1 * rng.standard_normal(dim))).astype(np.float32)

    head_dim = dim // heads
    writer.add_tensor("token_embd.weight", matrix(vocab, dim))
    writer.add_tensor("output_norm.weight", norm(4.0))
    for layer in range(layers):
        p = f"blk.{layer}."
        writer.add_tensor(p + "attn_norm.weight", norm())
        writer.add_tensor(p + "attn_q.weight", matrix(heads * head_dim, dim))
        writer.add_tensor(p + "attn_k.weight", matrix(kv_heads * head_dim, dim))
        writer.add_tensor(p + "attn_v.weight", matrix(kv_heads * head_dim, dim))
        writer.add_tensor(p + "attn_output.weight", matrix(dim, heads * head_dim))
        writer.add_tensor(p + "ffn_norm.weight", norm())
        writer.add_tensor(p + "ffn_gate.weight", matrix(ffn, dim))
        writer.add_tensor(p + "ffn_up.weight", matrix(ffn, dim))
        writer.add_tensor(p + "ffn_down.weight", matrix(dim, ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def quantize(source, dest, type_name, pure):
    args = [str(QUANTIZE), "--allow-requantize"]
    if pure:
        args += ["--pure", "--token-embedding-type", type_name, "--output-tensor-type", type_name]
    result = subprocess.run(args + [str(source), str(dest), type_name, "2"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"llama-quantize failed on {dest}:\n{result.stderr}")


def llamacpp_logits(model, tokens, n_greedy, logits_path):
    """Writes float32 [len(tokens)][vocab] to logits_path; returns the greedy tokens."""
    result = subprocess.run([str(DUMP_LOGITS), str(model), str(logits_path), str(n_greedy)] +
                            [str(t) for t in tokens], check=True, capture_output=True, text=True)
    return result.stdout.split()


def make_tiny_models():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prompt.tokens").write_text(" ".join(map(str, PROMPT)) + "\n")
    for shape, type_names in TYPES.items():
        source = LLAMACPP / f"{shape}-F32.gguf"
        write_f32_model(shape, source, **SHAPES[shape])
        for type_name in type_names:
            model = OUT / f"{shape}-{type_name}.gguf"
            quantize(source, model, type_name, pure=type_name not in MIXES)
            greedy = llamacpp_logits(model, PROMPT, GREEDY, OUT / f"{shape}-{type_name}.logits")
            (OUT / f"{shape}-{type_name}.greedy").write_text(" ".join(greedy) + "\n")
            print(f"{model.relative_to(ROOT)}: {model.stat().st_size} bytes, greedy {' '.join(greedy)}")


def make_default_golden():
    cases = json.loads((ROOT / "tests/data/smollm2_golden.json").read_text())["cases"]
    prompt = next(c["ids"] for c in cases if c["prompt"].startswith("<|im_start|>"))
    out = OUT / "default"
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompt.tokens").write_text(" ".join(map(str, prompt)) + "\n")
    for type_name in DEFAULT_TYPES:
        model = ROOT / f"weights/SmolLM2-135M-Instruct.{type_name}.gguf"
        if not model.exists():
            sys.exit(f"{model} is missing: run weights/requantize.sh first")
        scratch = LLAMACPP / f"default-{type_name}.logits"
        greedy = llamacpp_logits(model, prompt, DEFAULT_GREEDY, scratch)
        logits = np.fromfile(scratch, dtype=np.float32).reshape(len(prompt), -1)
        logits[-DEFAULT_POSITIONS:].astype(np.float16).tofile(out / f"{type_name}.logits")
        (out / f"{type_name}.greedy").write_text(" ".join(greedy) + "\n")
        print(f"{type_name}: greedy {' '.join(greedy)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--default", action="store_true",
                        help="golden data for the requantised default model instead")
    args = parser.parse_args()
    for tool in (QUANTIZE, DUMP_LOGITS):
        if not tool.exists():
            sys.exit(f"{tool} is missing: run tests/bench/build_llamacpp.sh first")
    make_default_golden() if args.default else make_tiny_models()


if __name__ == "__main__":
    main()
