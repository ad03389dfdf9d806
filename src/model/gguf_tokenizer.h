// The tokenizer of a GGUF file, from its tokenizer.ggml.* metadata. It lives with the
// model readers: the tokenizer library knows vocabularies, not file formats.
#pragma once
#include <memory>

#include "model/gguf.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

// Builds the tokenizer described by a GGUF file's tokenizer.ggml.* metadata: 'gpt2'
// (byte-level BPE) or 'llama' (sentencepiece). Throws std::runtime_error naming the file
// and what is missing or unsupported.
std::unique_ptr<Tokenizer> tokenizer_from_gguf(const gguf::File& file);

}  // namespace kvlm
