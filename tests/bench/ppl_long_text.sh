#!/usr/bin/env bash
# StreamingLLM's language-modelling figure on the default model: perplexity of a long real
# text read one token at a time, per method. The text is the licences Debian ships in
# /usr/share/common-licenses (GPL-3, GPL-2, LGPL-2.1, Apache-2.0, MPL-2.0, GFDL-1.3, in
# that order, concatenated): about 30K tokens that nobody in this project wrote.
#
#   tests/bench/ppl_long_text.sh [OUT_PREFIX=tests/results/ppl_licenses] [MAX_TOKENS=20000]
#
# Writes OUT_PREFIX.txt (the table), .csv, .json and .svg. Extra kvlm flags can be given
# in KVLM_FLAGS (e.g. "-t 2"). About half an hour on 2 CPU cores.
set -euo pipefail

out=${1:-tests/results/ppl_licenses}
max_tokens=${2:-20000}
kvlm=${KVLM:-./kvlm}
licences=/usr/share/common-licenses
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
text=$work/common-licenses.txt  # the name the chart's title shows
for name in GPL-3 GPL-2 LGPL-2.1 Apache-2.0 MPL-2.0 GFDL-1.3; do
  [ -f "$licences/$name" ] || { echo "$0: $licences/$name is missing (Debian's base-files ships it)" >&2; exit 2; }
  cat "$licences/$name" >> "$text"
done
# full stops at the trained context (8192); the others hold 256 tokens per head, with
# positions inside the cache so that they read past it. knorm keeps no full layers here
# (skip_layers=0), else those layers would fill the context too.
"$kvlm" ppl -f "$text" --ctx 8192 --max-tokens "$max_tokens" --segment 500 ${KVLM_FLAGS:-} \
  --kv-list "full,streaming:budget=256,streaming:budget=256,sinks=0,h2o:budget=256,pos=cache,knorm:budget=256,skip_layers=0,pos=cache" \
  --csv "$out.csv" --json "$out.json" --svg "$out.svg" | tee "$out.txt"
