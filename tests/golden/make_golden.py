#!/usr/bin/env python3
"""Golden data for kvlm's model tests, from an independent reference implementation.

Hugging Face transformers loads the same GGUF file kvlm loads (dequantising it to float32
with the `gguf` package) and runs its own Llama forward pass in float32 on the CPU. For
each prompt we record the token ids, the top-10 logits of the last prompt position, and
the first 32 greedy tokens together with the logit margin between the best and second-best
token at every step (so a test can tell a real divergence from a near-tie).

Not run by CI. Run once after changing prompts or the default model:
    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch transformers gguf numpy accelerate
    /tmp/refenv/bin/python tests/golden/make_golden.py weights/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/data/smollm2_golden.json
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived an old fisherman who",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWhat is the tallest mountain in the world?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n",
    "Les feuilles d'automne tombent doucement sur le chemin, et les enfants",
    "A key-value cache stores the keys and values of past tokens so that attention over the "
    "prefix does not have to be recomputed at every decoding step. When the context grows, "
    "this cache becomes the largest consumer of memory, which is why compression methods "
    "decide which entries to keep. The simplest method keeps",
]
GREEDY_STEPS = 32
TOP_K = 10


def main():
    path, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    directory, name = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, torch_dtype=torch.float32)
    model.eval()
    cases = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, TOP_K)
            generated, margins = [], []
            seq = list(ids)
            for _ in range(GREEDY_STEPS):
                step_logits = model(torch.tensor([seq])).logits[0, -1]
                best2 = torch.topk(step_logits, 2)
                generated.append(int(best2.indices[0]))
                margins.append(float(best2.values[0] - best2.values[1]))
                seq.append(generated[-1])
        cases.append({
            "prompt": prompt,
            "ids": ids,
            "top_ids": [int(i) for i in top.indices],
            "top_logits": [float(v) for v in top.values],
            "greedy": generated,
            "greedy_margins": margins,
            "greedy_text": tokenizer.decode(generated),
        })
        print(repr(prompt[:40]), len(ids), "tokens ->", repr(cases[-1]["greedy_text"][:60]))
    meta = {
        "model": name,
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, CPU",
        "greedy_steps": GREEDY_STEPS,
    }
    with open(out, "w") as f:
        json.dump({"meta": meta, "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
