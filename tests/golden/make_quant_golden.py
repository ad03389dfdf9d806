#!/usr/bin/env python3
"""Golden dequantisation of every weight type kvlm reads, by the `gguf` Python package
(ggml's own formats re-implemented in numpy, independently of kvlm).

For each type it draws random blocks (random bytes, with every float16 scale field set to
a finite random value so no block decodes to inf/NaN), and writes
    tests/data/quant/<TYPE>.blocks   the raw blocks, as they would lie in a GGUF file
    tests/data/quant/<TYPE>.f32      gguf.quants.dequantize of them, little-endian float32
tests/test_quant.cpp requires kvlm's dequantisation to reproduce the .f32 files bit for bit.

    pip install gguf==0.19.0 numpy && python3 tests/golden/make_quant_golden.py
"""
import os

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T, quants

# Byte offsets of the float16 scale fields inside one block of each type.
SCALE_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
BLOCKS = 6  # per type: 192 or 1536 weights


def main():
    out_dir = os.path.join(os.path.dirname(__file__), "..", "data", "quant")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(20261201)
    for qtype, fields in SCALE_FIELDS.items():
        block_elems, block_bytes = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(BLOCKS, block_bytes), dtype=np.uint8)
        for b in range(BLOCKS):
            for off in fields:
                # Mostly ordinary scales, one block with a subnormal and one with zero.
                scale = {0: 0.0, 1: 3e-6}.get(b, rng.uniform(-0.08, 0.08))
                raw[b, off:off + 2] = np.frombuffer(np.float16(scale).tobytes(), np.uint8)
        values = quants.dequantize(raw, qtype).astype("<f4").reshape(-1)
        assert values.size == BLOCKS * block_elems and np.all(np.isfinite(values))
        write(out_dir, qtype.name, raw.tobytes(), values.tobytes())
    # The float types: random finite values (one zero, one subnormal, one negative zero).
    for qtype, np_type in ((T.F16, np.float16), (T.BF16, None)):
        f32 = rng.normal(0, 0.5, size=256).astype(np.float32)
        f32[:3] = [0.0, 1e-7, -0.0]
        if np_type is not None:
            raw = f32.astype(np.float16).view(np.uint8)
        else:  # bfloat16: round to nearest even from float32 bits
            bits = f32.view(np.uint32).astype(np.uint64)
            raw = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2").view(np.uint8)
        values = quants.dequantize(raw, qtype).astype("<f4").reshape(-1)
        write(out_dir, qtype.name, raw.tobytes(), values.tobytes())


def write(out_dir, name, blocks, values):
    with open(os.path.join(out_dir, name + ".blocks"), "wb") as f:
        f.write(blocks)
    with open(os.path.join(out_dir, name + ".f32"), "wb") as f:
        f.write(values)
    print(f"{name}: {len(blocks)} bytes -> {len(values) // 4} weights")


if __name__ == "__main__":
    main()
