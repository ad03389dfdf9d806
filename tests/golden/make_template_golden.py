#!/usr/bin/env python3
"""Writes tests/data/chat_templates.json: conversations rendered by each model family's
published chat template, which tests/test_chat_template.cpp compares kvlm's layouts with,
byte for byte.

    /path/to/python tests/golden/make_template_golden.py [weights/SmolLM2-135M-Instruct.Q4_1.gguf]

Needs: jinja2; transformers and gguf are used for cross-checks when installed.

The templates below are copied from the models' tokenizer_config.json (chat_template), as
published on the Hugging Face hub. They are rendered the way transformers'
apply_chat_template renders them: a sandboxed jinja2 environment with trim_blocks and
lstrip_blocks, the loopcontrols extension, a raise_exception global, and bos_token /
eos_token set to the tokenizer's texts. When transformers is installed, its own renderer
must give the same text; when the SmolLM2 GGUF is given, its embedded template must be the
one below.
"""
import importlib.metadata
import json
import os
import platform
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# SmolLM2-135M-Instruct (ChatML with a default system prompt).
CHATML = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# meta-llama/Llama-2-7b-chat-hf.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and "
    "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
    "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

# meta-llama/Meta-Llama-3-8B-Instruct.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)

# mistralai/Mistral-7B-Instruct-v0.2 (mistralai's "v1" template, with a system prompt).
MISTRAL = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""

# HuggingFaceH4/zephyr-7b-beta and TinyLlama/TinyLlama-1.1B-Chat-v1.0.
ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}"
)

# name -> (template, bos_token, eos_token): the tokens of the models named above.
FAMILIES = {
    "chatml": (CHATML, "<|im_start|>", "<|im_end|>"),
    "llama2": (LLAMA2, "<s>", "</s>"),
    "llama3": (LLAMA3, "<|begin_of_text|>", "<|eot_id|>"),
    "mistral": (MISTRAL, "<s>", "</s>"),
    "zephyr": (ZEPHYR, "<s>", "</s>"),
}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


CONVERSATIONS = [
    [user("Hello")],
    [system("You are terse."), user("Hi there")],
    [system("Answer in French."), user("What is a cat?"), assistant("Un chat."), user("And a dog?")],
    [user("1+1?"), assistant("2"), user("2+2?"), assistant("4"), user("3+3?")],
    # Spaces and newlines at the ends of messages (Llama 2 strips, Llama 3 trims).
    [user("  padded question \n"), assistant(" answer with spaces "), user("\tnext\n")],
    [user("Größe? 日本語 😀\nsecond line")],
    # The roles do not alternate: Llama 2 and Mistral raise.
    [user("one"), user("two")],
]


def environment():
    """jinja2 set up as transformers' _compile_jinja_template does."""
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    return env


def render(env, template, bos, eos, messages, add_generation_prompt):
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=bos, eos_token=eos)
    except jinja2.exceptions.TemplateError:
        return None


def transformers_render(template, bos, eos, messages, add_generation_prompt):
    from transformers.utils.chat_template_utils import render_jinja_template
    try:
        rendered, _ = render_jinja_template(
            conversations=[messages], chat_template=template,
            add_generation_prompt=add_generation_prompt, bos_token=bos, eos_token=eos)
    except jinja2.exceptions.TemplateError:
        return None
    return rendered[0]


def check_smollm2_template(gguf_path):
    import gguf
    reader = gguf.GGUFReader(gguf_path)
    embedded = reader.fields["tokenizer.chat_template"].contents()
    if embedded != CHATML:
        sys.exit(f"the chat template in {gguf_path} differs from CHATML in this script")
    print(f"{gguf_path}: its chat template is CHATML")


def main():
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else "weights/SmolLM2-135M-Instruct.Q4_1.gguf"
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data",
                            "chat_templates.json")
    if os.path.exists(gguf_path):
        check_smollm2_template(gguf_path)
    try:
        import transformers
        have_transformers = True
    except ImportError:
        have_transformers = False
        print("transformers is not installed: no cross-check with its renderer")

    env = environment()
    cases = []
    for name, (template, bos, eos) in FAMILIES.items():
        for messages in CONVERSATIONS:
            # Without the generation prompt only where the conversation ends with an answer
            # or is a single turn: those are the shapes kvlm renders.
            for generation in (True, False):
                text = render(env, template, bos, eos, messages, generation)
                if have_transformers:
                    other = transformers_render(template, bos, eos, messages, generation)
                    if other != text:
                        sys.exit(f"{name}: transformers renders {other!r}, jinja2 {text!r}")
                cases.append({"template": name, "messages": messages,
                              "add_generation_prompt": generation,
                              # null: the template raises an exception
                              "text": text})

    versions = {"python": platform.python_version(), "jinja2": jinja2.__version__}
    if have_transformers:
        versions["transformers"] = importlib.metadata.version("transformers")
    golden = {
        "about": "Chat templates rendered with jinja2 as transformers' apply_chat_template "
                 "does; regenerate with tests/golden/make_template_golden.py. text null: "
                 "the template raises.",
        "versions": versions,
        "templates": {name: {"jinja": t, "bos_token": b, "eos_token": e}
                      for name, (t, b, e) in FAMILIES.items()},
        "cases": cases,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} renderings to {out_path}")


if __name__ == "__main__":
    main()
