#!/usr/bin/env python3
"""A random-weight Llama GGUF of a published shape, for measuring speed on files whose
matrices are real k-quants.

    python3 tests/bench/random_gguf.py tinyllama-1.1b build/llamacpp/tinyllama-F16.gguf
    build/llamacpp/cmake/bin/llama-quantize build/llamacpp/tinyllama-F16.gguf \\
        build/llamacpp/tinyllama-Q4_K_M.gguf Q4_K_M 2
    tests/bench/vs_llamacpp.sh build/llamacpp/tinyllama-Q4_K_M.gguf 5

The default model's hidden size (576) is not a multiple of 256, so llama-quantize stores
all of its matrices but ffn_down in blocks of 32 even in a "Q4_K_M" file. A model of
hidden size 2048 or 4096 is Q4_K and Q6_K throughout, as the files people download are.

The weights are seeded normals scaled by 1/sqrt(inputs) (each projection keeps its input's
scale; the final norm's weights of about 4 spread the logits), written in F16 one tensor at
a time, so an 8B file (15 GB) never sits in memory. The tokenizer and its vocabulary
(49152 tokens) are the default model's, whatever the shape's own vocabulary is; the output
matrix is separate from the embedding, as in these models. Needs the gguf and numpy
packages (pip).
"""
import argparse
import sys
from pathlib import Path

import gguf
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/golden"))
from make_quant_models import copy_tokenizer  # noqa: E402

TOKENIZER_SOURCE = ROOT / "weights/SmolLM2-135M-Instruct.Q4_1.gguf"

# Published configurations: layers, hidden, heads, KV heads, FFN, context, RoPE base.
SHAPES = {
    "tinyllama-1.1b": (22, 2048, 32, 4, 5632, 2048, 10000.0),
    "llama3-8b": (32, 4096, 32, 8, 14336, 8192, 500000.0),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shape", choices=sorted(SHAPES))
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not TOKENIZER_SOURCE.exists():
        sys.exit(f"{TOKENIZER_SOURCE} is missing: run weights/get-default.sh first")
    layers, dim, heads, kv_heads, ffn, context, rope_base = SHAPES[args.shape]
    head_dim = dim // heads

    writer = gguf.GGUFWriter(str(args.out), "llama")
    writer.add_name(f"random {args.shape}")
    writer.add_context_length(context)
    writer.add_embedding_length(dim)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    vocab = copy_tokenizer(writer, TOKENIZER_SOURCE)

    # (name, rows, cols); cols == 0 marks a norm's vector of `rows` weights.
    tensors = [("token_embd.weight", vocab, dim)]
    for layer in range(layers):
        p = f"blk.{layer}."
        tensors += [(p + "attn_norm.weight", dim, 0), (p + "attn_q.weight", heads * head_dim, dim),
                    (p + "attn_k.weight", kv_heads * head_dim, dim),
                    (p + "attn_v.weight", kv_heads * head_dim, dim),
                    (p + "attn_output.weight", dim, heads * head_dim), (p + "ffn_norm.weight", dim, 0),
                    (p + "ffn_gate.weight", ffn, dim), (p + "ffn_up.weight", ffn, dim),
                    (p + "ffn_down.weight", dim, ffn)]
    tensors += [("output_norm.weight", dim, 0), ("output.weight", vocab, dim)]

    for name, rows, cols in tensors:
        shape, dtype = ((rows,), np.float32) if cols == 0 else ((rows, cols), np.float16)
        writer.add_tensor_info(name, shape, np.dtype(dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    rng = np.random.default_rng(args.seed)
    for i, (name, rows, cols) in enumerate(tensors):
        if cols == 0:
            scale = 4.0 if name == "output_norm.weight" else 1.0
            data = (scale * (1 + 0.1 * rng.standard_normal(rows, dtype=np.float32))).astype(np.float32)
        else:
            data = np.empty((rows, cols), np.float16)
            for r in range(0, rows, 1024):  # a block of rows at a time: bounded memory
                block = rng.standard_normal((min(1024, rows - r), cols), dtype=np.float32)
                data[r:r + len(block)] = block / np.sqrt(cols)
        writer.write_tensor_data(data)
        print(f"\r{i + 1}/{len(tensors)} tensors", end="", file=sys.stderr, flush=True)
    writer.close()
    print(f"\n{args.out}: {args.out.stat().st_size / 2**30:.2f} GiB", file=sys.stderr)


if __name__ == "__main__":
    main()
