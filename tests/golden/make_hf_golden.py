#!/usr/bin/env python3
"""Tiny Hugging Face Llama models and their reference outputs, for kvlm's HF loader tests.

    /tmp/refenv/bin/python tests/golden/make_hf_golden.py

Writes, deterministically (fixed seeds, single-threaded training):
  tests/data/hf/<model>/            HF checkpoints: config.json, safetensors, tokenizer files
  tests/data/hf/<model>.gguf        the same weights converted the way llama.cpp converts Llama
  tests/data/hf_golden/<model>.json transformers' logits and greedy tokens (float32, CPU, eager)
  tests/data/hf_tokenizers.json     tokenizer parity: sentencepiece / tokenizers / transformers

Every tokenizer is trained here, on text built here from word lists, and every weight is
random: nothing comes from another corpus or checkpoint. The references are the libraries
(transformers, sentencepiece, tokenizers); nothing of kvlm is used.

Needs: torch transformers safetensors sentencepiece tokenizers gguf numpy protobuf.
"""
import copy
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import shutil
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' trainer: one thread, one order

import gguf  # noqa: E402
import sentencepiece as spm  # noqa: E402
from sentencepiece import sentencepiece_model_pb2  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_tokenizer_golden import CASES as COMMON_CASES, LONG_TEXT  # noqa: E402

DATA = os.path.join(HERE, "..", "data")
HF_DIR = os.path.join(DATA, "hf")
GOLDEN_DIR = os.path.join(DATA, "hf_golden")

GREEDY_STEPS = 16
TOP_K = 10

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
CHATML_SPECIALS = ["<|im_start|>", "<|im_end|>"]

# Chat templates, written here in the published formats of each family.
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system_message = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system_message = none %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message is not none %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}")
LLAMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
ZEPHYR_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + eos_token }}"
    "{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% if loop.last and add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
    "{% endfor %}")


# ---------------------------------------------------------------------------------------
# Training text: sentences combined from word lists with a fixed seed.

SUBJECTS = ["The cat", "A small robot", "My neighbour", "The old fisherman", "Our team",
            "The compiler", "Zoë", "José", "François", "The Müller family", "Björn", "Chloé",
            "A tired student", "The river", "Every morning the baker", "The server", "She", "They"]
VERBS = ["walks to", "writes about", "reads", "repairs", "dreams of", "measures", "paints",
         "counts", "sorts", "cooks", "visits", "compiles", "forgets", "remembers", "sells", "finds"]
OBJECTS = ["the red house", "a long letter", "the garden", "three green apples", "an old map",
           "the café near the station", "a naïve plan", "the crème brûlée", "the résumé",
           "a jalapeño pizza", "the façade", "the source code", "a broken clock", "the mountains",
           "the piñata", "the smörgåsbord", "a cup of tea", "the last train"]
ENDINGS = [".", "!", "?", "...", ";", ", again.", " today.", " at 7:30 p.m.", " (twice).",
           " — or so they say.", " 🙂", " 🎉!", " ✓", " again and again.", " on 2024-03-15."]
WORDS = ["time", "year", "people", "way", "day", "thing", "world", "life", "hand", "part",
         "child", "eye", "woman", "place", "work", "week", "case", "point", "number", "group",
         "problem", "fact", "token", "cache", "memory", "layer", "value", "key", "query", "model"]
NAMES = ["x", "y", "total", "count", "items", "buffer", "index", "result", "value", "node"]
EMOJI = ["😀", "👍", "❤️", "🎉", "🚀", "🌍", "☕", "🐍", "✨", "🙈"]


def training_text(seed=1234, sentences=600):
    rng = random.Random(seed)
    lines = []
    for i in range(sentences):
        kind = i % 6
        if kind in (0, 1):
            lines.append(f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"
                         f"{rng.choice(ENDINGS)}")
        elif kind == 2:
            n = rng.randint(0, 99999)
            price = rng.randint(1, 999) + rng.randint(0, 99) / 100
            lines.append(f"In {rng.randint(1900, 2030)}, {n} {rng.choice(WORDS)}s cost "
                         f"${price:.2f} (about €{price * 0.9:.2f}), i.e. {rng.randint(1, 99)}%.")
        elif kind == 3:
            a, b = rng.sample(NAMES, 2)
            k = rng.randint(2, 64)
            lines.append(f"def {rng.choice(WORDS)}_{a}({a}, {b}):\n    if {a} > {k}:\n"
                         f"        return {a} * {b} + {k}\n    return [{a}, {b}]  # {rng.choice(WORDS)}")
        elif kind == 4:
            words = rng.sample(WORDS, rng.randint(4, 9))
            sep = rng.choice([" ", "  ", "\t", ", ", " - "])
            lines.append(sep.join(words).capitalize() + rng.choice(ENDINGS) + " " + rng.choice(EMOJI))
        else:
            lines.append(f"\"{rng.choice(SUBJECTS)} can't stop,\" she said; it's {rng.choice(WORDS)}'s "
                         f"fault, isn't it? {{\"id\": {rng.randint(0, 999)}, \"ok\": true}}")
    return lines


# ---------------------------------------------------------------------------------------
# Tokenizers

def train_sentencepiece(lines, vocab_size=560):
    """A Llama-2-style sentencepiece BPE model, trained with Llama-2's trainer settings."""
    spm.set_random_generator_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "text.txt")
        with open(text, "w", encoding="utf-8") as f:
            # sentencepiece reads one sentence per line; code lines are kept as separate lines.
            f.write("\n".join(lines) + "\n")
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=text, model_prefix=prefix, vocab_size=vocab_size, model_type="bpe",
            byte_fallback=True, split_digits=True, add_dummy_prefix=True,
            normalization_rule_name="identity", remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True, split_by_unicode_script=True,
            split_by_number=True, split_by_whitespace=True, character_coverage=0.9995,
            max_sentencepiece_length=16, num_threads=1, shuffle_input_sentence=False,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            unk_piece="<unk>", bos_piece="<s>", eos_piece="</s>", minloglevel=2)
        proto = sentencepiece_model_pb2.ModelProto()
        with open(prefix + ".model", "rb") as f:
            proto.ParseFromString(f.read())
    # The trainer records its temporary paths; they would make every run's file differ.
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.ClearField("model_prefix")
    return proto.SerializeToString()


def train_byte_level_bpe(lines, vocab_size=480):
    """A Llama-3-style byte-level BPE; the special tokens come after the learned vocabulary,
    as in Llama 3 (ids 128000+), so no code can assume they sit at the start."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS])
    return tok


def with_bos_processor(tok, bos):
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A:0", pair=f"{bos} $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


# ---------------------------------------------------------------------------------------
# Models

def hub_config(vocab_size, heads, kv_heads, intermediate, eps, theta, max_positions, tied,
               rope_scaling, dtype, bos, eos, with_head_dim, hidden=64, layers=2):
    """config.json as the Hub's Llama checkpoints write it (rope_theta + rope_scaling), not
    transformers 5's rope_parameters, since that is what existing checkpoints contain."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": vocab_size, "hidden_size": hidden, "intermediate_size": intermediate,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "hidden_act": "silu", "max_position_embeddings": max_positions, "rms_norm_eps": eps,
        "rope_theta": theta, "rope_scaling": rope_scaling, "tie_word_embeddings": tied,
        "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False,
        "initializer_range": 0.02, "pretraining_tp": 1, "use_cache": True,
        "bos_token_id": bos, "eos_token_id": eos, "torch_dtype": dtype,
        "transformers_version": transformers.__version__,
    }
    if with_head_dim:
        config["head_dim"] = hidden // heads
    return config


def randomise(model, seed):
    """Weights with a useful spread: random norm gains around 1 (so a loader that skips a norm
    weight fails), projections scaled by fan-in, and an output head wide enough that the
    logits are decisive (greedy margins well above rounding noise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name or "lm_head" in name:
                p.copy_(0.4 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1]))


def save_model(directory, config_dict, seed, max_shard_size=None):
    torch_dtype = getattr(torch, config_dict["torch_dtype"])
    config = LlamaConfig(**{k: copy.deepcopy(v) for k, v in config_dict.items()
                            if k not in ("architectures", "torch_dtype", "transformers_version")})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    randomise(model, seed)
    model.to(torch_dtype)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(directory, **kwargs)
    os.remove(os.path.join(directory, "generation_config.json"))
    write_json(os.path.join(directory, "config.json"), config_dict)


def load_model(directory):
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model


# ---------------------------------------------------------------------------------------
# Golden outputs

def sig6(values):
    return [float(f"{v:.6g}") for v in values]


def run_case(directory, ids, all_positions):
    """Fresh model per call: dynamic NTK keeps state (its cached frequencies) between calls."""
    model = load_model(directory)
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    last = logits[-1]
    case = {"ids": ids, "last_logits": sig6(last.tolist()),
            "top_ids": [int(i) for i in torch.topk(last, TOP_K).indices]}
    if all_positions:
        case["all_logits"] = [sig6(row.tolist()) for row in logits]

    model = load_model(directory)
    out = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=GREEDY_STEPS,
                         min_new_tokens=GREEDY_STEPS, output_logits=True,
                         return_dict_in_generate=True, temperature=None, top_p=None, top_k=None)
    greedy = [int(t) for t in out.sequences[0, len(ids):]]
    margins, step_top_ids, step_top_logits = [], [], []
    for step, raw in enumerate(out.logits):
        top = torch.topk(raw[0], TOP_K)
        # min_new_tokens masks EOS; the raw argmax must agree, or the golden is not pure greedy.
        assert int(top.indices[0]) == greedy[step], f"EOS masking changed step {step} in {directory}"
        margins.append(float(f"{float(top.values[0] - top.values[1]):.4g}"))
        step_top_ids.append([int(i) for i in top.indices])
        step_top_logits.append(sig6(top.values.tolist()))
    case["greedy"] = greedy
    case["greedy_margins"] = margins
    case["greedy_top_ids"] = step_top_ids
    case["greedy_top_logits"] = step_top_logits
    return case


def golden_for(name, prompts, tokenizer_decode, notes, gguf_file):
    directory = os.path.join(HF_DIR, name)
    cases = []
    for i, prompt in enumerate(prompts):
        ids = prompt["ids"]
        case = {"name": prompt["name"]}
        case.update({k: prompt[k] for k in ("text", "messages") if k in prompt})
        case.update(run_case(directory, ids, all_positions=(i == 0)))
        case["greedy_text"] = tokenizer_decode(case["greedy"])
        cases.append(case)
        print(f"  {name}/{prompt['name']}: {len(ids)} prompt tokens, greedy {case['greedy'][:6]}..., "
              f"min margin {min(case['greedy_margins']):.3f}")
    config = json.load(open(os.path.join(directory, "config.json")))
    golden = {
        "about": "transformers reference for tests/data/hf/" + name + "; regenerate with "
                 "tests/golden/make_hf_golden.py. ids: the prompt as the model's HF tokenizer "
                 "encodes it (special tokens as it adds them; chat cases via apply_chat_template). "
                 "last_logits: logits of the last prompt position, full vocabulary, 6 significant "
                 "digits. all_logits (first case only): every prompt position. greedy: "
                 f"{GREEDY_STEPS} tokens from model.generate(do_sample=False, KV cache), EOS never "
                 "stops it; greedy_margins: top1 - top2 raw logit at each step; greedy_top_ids / "
                 "greedy_top_logits: the top-10 of the raw logits at each step (step 0 = last "
                 "prompt position, step k = after feeding greedy[k-1]).",
        "model": name,
        "hf_directory": "hf/" + name,
        "gguf": gguf_file,
        "reference": {"library": "transformers", "compute": "float32 on CPU, eager attention, "
                      "weights loaded from the saved dtype with dtype=float32",
                      **versions()},
        "config": {k: config[k] for k in (
            "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "rms_norm_eps", "rope_theta",
            "rope_scaling", "max_position_embeddings", "tie_word_embeddings", "torch_dtype")},
        "notes": notes,
        "cases": cases,
    }
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    write_compact_json(os.path.join(GOLDEN_DIR, name + ".json"), golden)
    return golden


def write_compact_json(path, obj):
    """Indented JSON with every list of numbers on one line: small files, readable diffs."""
    def dump(value, indent):
        pad = " " * indent
        if isinstance(value, dict):
            items = [f"{pad} {json.dumps(k)}: {dump(v, indent + 1)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
            return "[\n" + ",\n".join(pad + " " + dump(v, indent + 1) for v in value) + "\n" + pad + "]"
        return json.dumps(value, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump(obj, 0) + "\n")
    assert json.load(open(path, encoding="utf-8")) == obj


def versions():
    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__, "gguf": importlib.metadata.version("gguf"),
            "numpy": np.__version__}


# ---------------------------------------------------------------------------------------
# GGUF conversion (as llama.cpp's convert_hf_to_gguf.py does for Llama)

def permute_rows(w, n_head):
    """HF rotates halves of each head, llama.cpp adjacent pairs: reorder Q/K rows to match."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(config):
    s = config["rope_scaling"]
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    freqs = 1.0 / (config["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    old_context = s["original_max_position_embeddings"]
    low_wavelen = old_context / s["low_freq_factor"]
    high_wavelen = old_context / s["high_freq_factor"]
    factors, regions = [], []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
            regions.append("high (unscaled)")
        elif wavelen > low_wavelen:
            factors.append(s["factor"])
            regions.append("low (divided by factor)")
        else:
            smooth = (old_context / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            factors.append(1.0 / ((1 - smooth) / s["factor"] + smooth))
            regions.append("medium (interpolated)")
    return np.array(factors, dtype=np.float32), regions


def tensor_as(t, dtype):
    """numpy array plus the GGUF raw type for a torch tensor in the checkpoint's dtype."""
    if dtype == torch.bfloat16:
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16), gguf.GGMLQuantizationType.BF16
    if dtype == torch.float16:
        return t.to(torch.float16).numpy(), None
    return t.to(torch.float32).numpy(), None


def convert_to_gguf(name, vocab_writer):
    directory = os.path.join(HF_DIR, name)
    config = json.load(open(os.path.join(directory, "config.json")))
    dtype = getattr(torch, config["torch_dtype"])
    # Read the safetensors exactly as saved (no float32 round trip can alter the values).
    state = {}
    for file in sorted(os.listdir(directory)):
        if file.endswith(".safetensors"):
            state.update(load_file(os.path.join(directory, file)))

    path = os.path.join(HF_DIR, name + ".gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_context_length(config["max_position_embeddings"])
    w.add_embedding_length(config["hidden_size"])
    w.add_block_count(config["num_hidden_layers"])
    w.add_feed_forward_length(config["intermediate_size"])
    w.add_head_count(config["num_attention_heads"])
    w.add_head_count_kv(config["num_key_value_heads"])
    w.add_layer_norm_rms_eps(config["rms_norm_eps"])
    w.add_rope_freq_base(config["rope_theta"])
    w.add_rope_dimension_count(config["hidden_size"] // config["num_attention_heads"])
    w.add_vocab_size(config["vocab_size"])
    w.add_file_type({torch.float32: gguf.LlamaFileType.ALL_F32, torch.float16: gguf.LlamaFileType.MOSTLY_F16,
                     torch.bfloat16: gguf.LlamaFileType.MOSTLY_BF16}[dtype])
    scaling = config.get("rope_scaling") or {}
    scaling_type = scaling.get("rope_type", scaling.get("type"))
    if scaling_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(scaling["factor"])
    vocab_writer(w)

    def add(gguf_name, t):
        if t.dim() == 1:  # llama.cpp keeps norms in F32 whatever the model type
            w.add_tensor(gguf_name, t.to(torch.float32).numpy())
        else:
            array, raw = tensor_as(t, dtype)
            w.add_tensor(gguf_name, array, raw_dtype=raw)

    if scaling_type == "llama3":
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(config)[0])
    add("token_embd.weight", state["model.embed_tokens.weight"])
    add("output_norm.weight", state["model.norm.weight"])
    if not config["tie_word_embeddings"]:
        add("output.weight", state["lm_head.weight"])
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        add(b + "attn_norm.weight", state[p + "input_layernorm.weight"])
        add(b + "attn_q.weight", permute_rows(state[p + "self_attn.q_proj.weight"], heads))
        add(b + "attn_k.weight", permute_rows(state[p + "self_attn.k_proj.weight"], kv_heads))
        add(b + "attn_v.weight", state[p + "self_attn.v_proj.weight"])
        add(b + "attn_output.weight", state[p + "self_attn.o_proj.weight"])
        add(b + "ffn_norm.weight", state[p + "post_attention_layernorm.weight"])
        add(b + "ffn_gate.weight", state[p + "mlp.gate_proj.weight"])
        add(b + "ffn_up.weight", state[p + "mlp.up_proj.weight"])
        add(b + "ffn_down.weight", state[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return "hf/" + name + ".gguf"


def spm_vocab_writer(model_bytes, chat_template):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_bytes)

    def write(w):
        w.add_tokenizer_model("llama")
        w.add_token_list([p.piece.encode("utf-8") for p in proto.pieces])
        w.add_token_scores([p.score for p in proto.pieces])
        # sentencepiece's piece types (NORMAL=1 ... BYTE=6) are GGUF's token types.
        w.add_token_types([int(p.type) for p in proto.pieces])
        w.add_bos_token_id(proto.trainer_spec.bos_id)
        w.add_eos_token_id(proto.trainer_spec.eos_id)
        w.add_unk_token_id(proto.trainer_spec.unk_id)
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
        w.add_chat_template(chat_template)
    return write


def bpe_vocab_writer(tok, bos, eos, add_bos, chat_template):
    spec = json.loads(tok.to_str())
    vocab = tok.get_vocab(with_added_tokens=True)
    tokens = [None] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = {t["content"] for t in spec["added_tokens"] if t["special"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    def write(w):
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("llama-bpe")
        w.add_token_list(tokens)
        w.add_token_types([3 if t in special else 1 for t in tokens])
        w.add_token_merges(merges)
        w.add_bos_token_id(vocab[bos])
        w.add_eos_token_id(vocab[eos])
        w.add_add_bos_token(add_bos)
        w.add_chat_template(chat_template)
    return write


# ---------------------------------------------------------------------------------------
# The four models

def build_llama2_spm(spm_bytes):
    name = "llama2-spm"
    directory = os.path.join(HF_DIR, name)
    os.makedirs(directory)
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    config = hub_config(sp.get_piece_size(), heads=4, kv_heads=4, intermediate=176, eps=1e-6,
                        theta=10000.0, max_positions=128, tied=False, rope_scaling=None,
                        dtype="float16", bos=1, eos=2, with_head_dim=False)
    save_model(directory, config, seed=101)
    write_spm_tokenizer(directory, spm_bytes, LLAMA2_TEMPLATE)
    write_json(os.path.join(directory, "generation_config.json"), {
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "do_sample": True,
        "temperature": 0.6, "top_p": 0.9, "max_length": 128})
    return name


def write_spm_tokenizer(directory, spm_bytes, chat_template):
    with open(os.path.join(directory, "tokenizer.model"), "wb") as f:
        f.write(spm_bytes)
    write_json(os.path.join(directory, "tokenizer_config.json"), {
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": None, "add_bos_token": True, "add_eos_token": False,
        "clean_up_tokenization_spaces": False, "legacy": True, "model_max_length": 1000000,
        "chat_template": chat_template})
    write_json(os.path.join(directory, "special_tokens_map.json"), {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"})


def build_llama3_gqa(bpe):
    name = "llama3-gqa"
    directory = os.path.join(HF_DIR, name)
    os.makedirs(directory)
    vocab = bpe.get_vocab(with_added_tokens=True)
    bos, end, eot = vocab["<|begin_of_text|>"], vocab["<|end_of_text|>"], vocab["<|eot_id|>"]
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = hub_config(len(vocab), heads=4, kv_heads=2, intermediate=160, eps=1e-5,
                        theta=500000.0, max_positions=512, tied=False, rope_scaling=scaling,
                        dtype="bfloat16", bos=bos, eos=[end, eot], with_head_dim=True)
    save_model(directory, config, seed=202)
    with_bos_processor(bpe, "<|begin_of_text|>").save(os.path.join(directory, "tokenizer.json"))
    write_json(os.path.join(directory, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "clean_up_tokenization_spaces": True,
        "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
        "chat_template": LLAMA3_TEMPLATE})
    write_json(os.path.join(directory, "generation_config.json"), {
        "bos_token_id": bos, "eos_token_id": [end, eot], "do_sample": True,
        "temperature": 0.6, "top_p": 0.9})
    return name


def build_untied_linear(bpe):
    """The BPE of llama3-gqa plus ChatML tokens and no BOS post-processor (as Qwen/SmolLM)."""
    name = "untied-linear"
    directory = os.path.join(HF_DIR, name)
    os.makedirs(directory)
    tok = Tokenizer.from_str(bpe.to_str())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CHATML_SPECIALS])
    tok.post_processor = None
    vocab = tok.get_vocab(with_added_tokens=True)
    config = hub_config(len(vocab), heads=4, kv_heads=1, intermediate=128, eps=1e-5,
                        theta=10000.0, max_positions=256, tied=False,
                        rope_scaling={"type": "linear", "factor": 2.0}, dtype="float32",
                        bos=vocab["<|begin_of_text|>"], eos=vocab["<|im_end|>"], with_head_dim=False)
    save_model(directory, config, seed=303)
    tok.save(os.path.join(directory, "tokenizer.json"))
    write_json(os.path.join(directory, "tokenizer_config.json"), {
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
        "add_bos_token": False, "clean_up_tokenization_spaces": False,
        "model_max_length": 256, "chat_template": CHATML_TEMPLATE})
    write_json(os.path.join(directory, "generation_config.json"), {
        "eos_token_id": vocab["<|im_end|>"], "do_sample": False})
    return name, tok


def build_sharded_dynamic(spm_bytes):
    name = "sharded-dynamic"
    directory = os.path.join(HF_DIR, name)
    os.makedirs(directory)
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    config = hub_config(sp.get_piece_size(), heads=4, kv_heads=4, intermediate=176, eps=1e-5,
                        theta=10000.0, max_positions=32, tied=True,
                        rope_scaling={"type": "dynamic", "factor": 2.0}, dtype="float32",
                        bos=1, eos=2, with_head_dim=False)
    save_model(directory, config, seed=404, max_shard_size="200KB")
    write_spm_tokenizer(directory, spm_bytes, ZEPHYR_TEMPLATE)
    write_json(os.path.join(directory, "generation_config.json"), {
        "bos_token_id": 1, "eos_token_id": 2, "max_length": 2048, "pad_token_id": 0})
    return name


# ---------------------------------------------------------------------------------------
# Tokenizer parity

SPM_EXTRA_CASES = [
    " x", "  x", "   x", "x  y   z", "x\ny", "\n\nx", "x\n", "\tx", "x\t\ty", " \t \n ",
    "ẞ Ǆ ꙮ 🦀 ∰",  # absent from the vocabulary: byte fallback
    "<s>", "</s>", "<unk>", "<s>Hello</s>", "Hello <s> world", "▁ the meta symbol ▁▁ in text",
    "<0x41> looks like a byte piece", "[INST] Hi [/INST]", "1234567890 0.5 -3",
]


def spm_parity(spm_bytes, directory):
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    hf = AutoTokenizer.from_pretrained(directory)  # tokenizer_config.json says legacy: true
    hf_not_legacy = AutoTokenizer.from_pretrained(directory, legacy=False)
    cases, differ, legacy_matters = [], [], []
    for text in COMMON_CASES + SPM_EXTRA_CASES + [LONG_TEXT]:
        ids = [sp.bos_id()] + sp.encode(text)
        case = {"text": text, "ids": ids, "decoded": sp.decode(ids)}
        hf_ids = hf(text)["input_ids"]
        if hf_ids != ids:
            case["hf_ids"] = hf_ids
            differ.append(text)
        hf_decoded = hf.decode(hf_ids, skip_special_tokens=True)
        if hf_decoded != case["decoded"]:
            case["hf_decoded"] = hf_decoded
        if hf_not_legacy(text)["input_ids"] != hf_ids:
            legacy_matters.append(text)
        cases.append(case)
    return {
        "files": ["hf/llama2-spm/tokenizer.model", "hf/sharded-dynamic/tokenizer.model"],
        "reference": "sentencepiece SentencePieceProcessor: ids = [bos] + encode(text) (as the "
                     "slow LlamaTokenizer with add_bos_token; '<s>' in text is plain text); "
                     "decoded = decode(ids) (control tokens decode to nothing)",
        "hf": f"transformers {transformers.__version__} {type(hf).__name__} loaded from the "
              "directory (converted from tokenizer.model, legacy: true as configured); hf_ids / "
              "hf_decoded (decode with skip_special_tokens=True) appear only where they differ "
              "from the reference",
        "hf_differs_on": differ,
        "hf_legacy_false_differs_from_legacy_true_on": legacy_matters,
        "cases": cases,
    }


def bpe_parity(tok, files):
    cases = []
    for text in COMMON_CASES + ["<|begin_of_text|>hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nhi",
                                "<|im_start|>user\nhi<|im_end|>\n"] + [LONG_TEXT]:
        plain = tok.encode(text, add_special_tokens=False).ids
        with_special = tok.encode(text, add_special_tokens=True).ids
        case = {"text": text, "ids": plain}
        if with_special != plain:
            case["ids_with_special"] = with_special
        case["decoded"] = tok.decode(plain, skip_special_tokens=False)
        cases.append(case)
    return {
        "files": files,
        "reference": "tokenizers Tokenizer.from_file(tokenizer.json); ids = encode(text, "
                     "add_special_tokens=False) with special tokens in text parsed; "
                     "ids_with_special = encode(text, add_special_tokens=True), only where it "
                     "differs; decoded = decode(ids, skip_special_tokens=False)",
        "cases": cases,
    }


# ---------------------------------------------------------------------------------------
# Prompts and checks

SYSTEM = "You are a terse assistant. Answer in one line."
PLAIN = "The old fisherman walks to the red house and counts three green apples."
DIGITS = "Zoë paid €12.50 for 3 crème brûlées on 2024-03-15 at 7:30 — naïve, isn't it? 🙂"
CODE = "def total_count(x, y):\n    if x > 42:\n        return x * y + 7\n    return [x, y]"
LONG = ("In 1987, the tired student reads a long letter about the café near the station; "
        "she counts 31 apples, 4 maps and 1024 tokens, then writes 2 pages!")
DYNAMIC_LONG = "The old fisherman walks to the red house and counts 31 green apples, then reads a long letter."
DYNAMIC_SHORT = "The cat reads the last train and the red house."


def chat(tokenizer, name, user, system=SYSTEM):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=False)
    return {"name": name, "messages": messages, "text": text, "ids": list(ids)}


def plain(tokenizer, name, text):
    return {"name": name, "text": text, "ids": tokenizer(text)["input_ids"]}


def spm_reference_ids(sp, text, bos):
    """What sentencepiece gives for text whose special tokens HF parses: each piece of text
    between '<s>' / '</s>' encoded on its own (with its dummy prefix, like the legacy slow
    LlamaTokenizer), the special tokens as their ids, BOS first when the tokenizer adds it."""
    ids = [sp.bos_id()] if bos else []
    for part in re.split("(<s>|</s>)", text):
        if part in ("<s>", "</s>"):
            ids.append(sp.piece_to_id(part))
        elif part:
            ids.extend(sp.encode(part))
    return ids


def check_spm_prompts(spm_bytes, prompts):
    sp = spm.SentencePieceProcessor(model_proto=spm_bytes)
    for p in prompts:
        expected = spm_reference_ids(sp, p["text"], bos="messages" not in p)
        assert p["ids"] == expected, f"HF and sentencepiece disagree on {p['name']}: {p['ids']} vs {expected}"


def check_bpe_prompts(tokenizer_json, prompts):
    tok = Tokenizer.from_file(tokenizer_json)
    for p in prompts:
        expected = tok.encode(p["text"], add_special_tokens="messages" not in p).ids
        assert p["ids"] == expected, f"HF and tokenizers disagree on {p['name']}"


def rotary(directory):
    return load_model(directory).model.rotary_emb


def llama3_notes(directory, config):
    factors, regions = llama3_rope_factors(config)
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    base = 1.0 / (config["rope_theta"] ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    hf_inv_freq = rotary(directory).inv_freq.numpy()
    # transformers' scaled frequencies must be llama.cpp's rope_freqs factors dividing the base ones.
    assert np.allclose(hf_inv_freq, base / factors, rtol=1e-5), (hf_inv_freq, base / factors)
    print("  llama3 rope regions per frequency:", regions)
    assert {r.split()[0] for r in regions} == {"high", "medium", "low"}
    return {"rope": "llama3: inv_freq[i] = theta^(-2i/d) / rope_factor[i]; the GGUF stores "
                    "rope_factor as rope_freqs.weight (llama.cpp divides the frequency by it)",
            "rope_factors": sig6(factors.tolist()), "rope_regions": regions,
            "inv_freq": sig6(hf_inv_freq.tolist())}


def dynamic_notes(directory, prompts):
    """Checks that dynamic NTK changes this model's outputs and records how transformers does it."""
    config = LlamaConfig.from_pretrained(directory)
    config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_parameters["rope_theta"]}
    unscaled = LlamaForCausalLM.from_pretrained(directory, config=config, dtype=torch.float32,
                                                attn_implementation="eager").eval()
    diffs = {}
    for p in prompts:
        ids = torch.tensor([p["ids"]])
        with torch.no_grad():
            scaled_logits = load_model(directory)(ids).logits[0, -1]
            diffs[p["name"]] = float(f"{float((scaled_logits - unscaled(ids).logits[0, -1]).abs().max()):.4g}")
    longest = max(prompts, key=lambda p: len(p["ids"]))
    emb = rotary(directory)
    with torch.no_grad():
        emb(torch.zeros(1), torch.arange(len(longest["ids"]))[None])
    print("  dynamic NTK vs no scaling, max |logit diff| of the last position:", diffs)
    assert diffs[longest["name"]] > 1e-3, "dynamic scaling does not change the logits"
    return {
        "rope": "dynamic NTK as transformers applies it: at every forward call, seq_len = "
                "max(position_ids) + 1 of that call; if seq_len > max_position_embeddings the "
                "frequencies are recomputed with base' = theta * (factor * seq_len / "
                "max_position_embeddings - (factor - 1)) ^ (d / (d - 2)), inv_freq[i] = base'^(-2i/d), "
                "and used for the queries and keys of that call only. Keys already in the KV cache "
                "keep the rotation they were given when computed. So a prompt longer than "
                "max_position_embeddings is prefilled (one call) with seq_len = prompt length, and "
                "decode step t (position L + t) uses seq_len = L + t + 1. Below the limit the "
                "unscaled frequencies are used. (transformers caches the largest seq_len seen and only "
                "resets it when a call's seq_len falls below the limit; the golden reloads the model "
                "per prompt so every case starts fresh.)",
        "max_position_embeddings": config.max_position_embeddings,
        "last_logits_max_abs_diff_vs_no_scaling": diffs,
        "inv_freq_for_longest_prompt": {"case": longest["name"], "seq_len": len(longest["ids"]),
                                        "inv_freq": sig6(emb.inv_freq.tolist())},
    }


def check_gguf(name, path):
    """transformers' own GGUF reader (which undoes the Q/K permutation) must reproduce the golden
    logits from our GGUF; it ignores GGUF rope scaling, so the HF config supplies it."""
    config = LlamaConfig.from_pretrained(os.path.join(HF_DIR, name))
    model = AutoModelForCausalLM.from_pretrained(DATA, gguf_file=path, config=config, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    golden = json.load(open(os.path.join(GOLDEN_DIR, name + ".json")))
    worst = 0.0
    for case in golden["cases"]:
        with torch.no_grad():
            logits = model(torch.tensor([case["ids"]])).logits[0, -1]
        worst = max(worst, float((logits - torch.tensor(case["last_logits"])).abs().max()))
    print(f"  {path}: transformers from GGUF vs golden, max |logit diff| {worst:.2g}")
    assert worst < 1e-4


def main():
    shutil.rmtree(GOLDEN_DIR, ignore_errors=True)
    os.makedirs(HF_DIR, exist_ok=True)
    for entry in os.listdir(HF_DIR):  # everything but the hand-written README is regenerated
        path = os.path.join(HF_DIR, entry)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif entry != "README.md":
            os.remove(path)
    lines = training_text()
    spm_bytes = train_sentencepiece(lines)
    bpe = train_byte_level_bpe(lines)

    llama2 = build_llama2_spm(spm_bytes)
    llama3 = build_llama3_gqa(Tokenizer.from_str(bpe.to_str()))
    untied, chatml_tok = build_untied_linear(with_bos_processor(Tokenizer.from_str(bpe.to_str()),
                                                                "<|begin_of_text|>"))
    dynamic = build_sharded_dynamic(spm_bytes)

    gguf_files = {
        llama2: convert_to_gguf(llama2, spm_vocab_writer(spm_bytes, LLAMA2_TEMPLATE)),
        llama3: convert_to_gguf(llama3, bpe_vocab_writer(
            Tokenizer.from_file(os.path.join(HF_DIR, llama3, "tokenizer.json")),
            "<|begin_of_text|>", "<|eot_id|>", True, LLAMA3_TEMPLATE)),
        untied: convert_to_gguf(untied, bpe_vocab_writer(
            chatml_tok, "<|begin_of_text|>", "<|im_end|>", False, CHATML_TEMPLATE)),
        dynamic: None,  # llama.cpp has no dynamic NTK, so there is no faithful GGUF of it
    }

    hf_tok = {name: AutoTokenizer.from_pretrained(os.path.join(HF_DIR, name))
              for name in (llama2, llama3, untied, dynamic)}
    prompts = {
        llama2: [plain(hf_tok[llama2], "plain", PLAIN),
                 chat(hf_tok[llama2], "chat", "Count to 3, José!"),
                 plain(hf_tok[llama2], "digits_accents", DIGITS),
                 plain(hf_tok[llama2], "code", CODE)],
        llama3: [plain(hf_tok[llama3], "plain", PLAIN),
                 chat(hf_tok[llama3], "chat", "Count to 3, José!"),
                 plain(hf_tok[llama3], "digits_accents", DIGITS),
                 plain(hf_tok[llama3], "long", LONG + " " + PLAIN)],
        untied: [plain(hf_tok[untied], "plain", PLAIN),
                 chat(hf_tok[untied], "chat", "Count to 3, José!"),
                 plain(hf_tok[untied], "digits_accents", DIGITS)],
        # Longer than max_position_embeddings (32), except "short", which crosses it while generating.
        dynamic: [plain(hf_tok[dynamic], "long_plain", DYNAMIC_LONG),
                  chat(hf_tok[dynamic], "chat", "Say 1 to 5.", system="Be brief."),
                  plain(hf_tok[dynamic], "digits_accents", DIGITS),
                  plain(hf_tok[dynamic], "short", DYNAMIC_SHORT)],
    }
    check_spm_prompts(spm_bytes, prompts[llama2] + prompts[dynamic])
    check_bpe_prompts(os.path.join(HF_DIR, llama3, "tokenizer.json"), prompts[llama3])
    check_bpe_prompts(os.path.join(HF_DIR, untied, "tokenizer.json"), prompts[untied])
    lengths = {p["name"]: len(p["ids"]) for p in prompts[dynamic]}
    assert all(n > 32 for k, n in lengths.items() if k != "short") and lengths["short"] + GREEDY_STEPS > 32, lengths

    config = {name: json.load(open(os.path.join(HF_DIR, name, "config.json"))) for name in prompts}
    notes = {
        llama2: {"rope": "no scaling; HF rotates halves (x[i], x[i+d/2]), the GGUF's Q/K rows are "
                         "permuted for adjacent pairs",
                 "chat": "ids of the chat case = what the legacy LlamaTokenizer gives: '<s>' parsed "
                         "as BOS, the text after it encoded with its own dummy prefix ('▁[INST]')"},
        llama3: {**llama3_notes(os.path.join(HF_DIR, llama3), config[llama3]),
                 "dtype": "BF16 safetensors; the GGUF keeps BF16 (ggml type 30), norms F32"},
        untied: {"rope": "linear: inv_freq[i] = theta^(-2i/d) / factor (positions divided by factor)",
                 "tokenizer": "no BOS is added (no post-processor, add_bos_token false)"},
        dynamic: {**dynamic_notes(os.path.join(HF_DIR, dynamic), prompts[dynamic]),
                  "chat": "Zephyr template has no BOS and apply_chat_template adds none; '</s>' in "
                          "it is parsed as EOS (id 2)"},
    }
    for name, name_prompts in prompts.items():
        tok = hf_tok[name]
        golden_for(name, name_prompts, lambda ids: tok.decode(ids, skip_special_tokens=False),
                   notes[name], gguf_files[name])

    parity = {
        "about": "Tokenizer parity data for the tokenizers of tests/data/hf; regenerate with "
                 "tests/golden/make_hf_golden.py. Strings: tests/golden/make_tokenizer_golden.py's "
                 "CASES and LONG_TEXT, plus per-tokenizer extra cases.",
        "versions": versions(),
        "spm": spm_parity(spm_bytes, os.path.join(HF_DIR, llama2)),
        "bpe_llama3": bpe_parity(Tokenizer.from_file(os.path.join(HF_DIR, llama3, "tokenizer.json")),
                                 ["hf/llama3-gqa/tokenizer.json"]),
        "bpe_chatml": bpe_parity(Tokenizer.from_file(os.path.join(HF_DIR, untied, "tokenizer.json")),
                                 ["hf/untied-linear/tokenizer.json"]),
    }
    write_compact_json(os.path.join(DATA, "hf_tokenizers.json"), parity)
    for name, path in gguf_files.items():
        if path:
            check_gguf(name, path)
    print(f"spm: transformers differs from sentencepiece on {len(parity['spm']['hf_differs_on'])} "
          f"of {len(parity['spm']['cases'])} strings")
    report_sizes()


def report_sizes():
    total = 0
    for entry in sorted(os.listdir(HF_DIR)) + ["../hf_golden", "../hf_tokenizers.json"]:
        path = os.path.join(HF_DIR, entry)
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] if os.path.isdir(path) else [path]
        size = sum(os.path.getsize(f) for f in files)
        total += size
        print(f"  {size / 1024:8.1f} KiB  {os.path.normpath(os.path.relpath(path, DATA))}")
        assert size < 2 * 1024 * 1024, f"{path} is over 2 MB"
    print(f"  {total / 1024:8.1f} KiB  total")
    assert total < 6 * 1024 * 1024


if __name__ == "__main__":
    main()
