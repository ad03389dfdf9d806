// Fuzz harnesses: one function per input kvlm reads from outside, taking arbitrary bytes.
// Each is built into its own libFuzzer binary (fuzz_main.cpp, `make fuzz`) and into the
// test binary, which replays the seeds and the crashes found so far
// (tests/test_fuzz_regressions.cpp).
//
// A harness returns normally when the input is accepted or refused with the errors the
// library documents for bad input (std::runtime_error, std::invalid_argument). Anything
// else escapes: another exception, a failed check of a property the harness tests
// (std::logic_error from fuzz_check), or a crash.
//
// Inputs that hold several files separate them with NUL bytes, which no JSON text contains.
// The harnesses read test data from tests/data, so they run from the repository root.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvlm::fuzz {

// A GGUF file: header, metadata (every key through every typed getter), tensor directory,
// and the first and last byte of each tensor's data.
void fuzz_gguf(const uint8_t* data, size_t size);
// A .safetensors file: header, and the first and last byte of each tensor.
void fuzz_safetensors(const uint8_t* data, size_t size);
// model.safetensors.index.json, in a directory holding two valid shards (tensors "a" in
// model-00001-of-00002.safetensors, "b" in model-00002-of-00002.safetensors).
void fuzz_safetensors_index(const uint8_t* data, size_t size);
// config.json NUL generation_config.json NUL tokenizer_config.json: the model config,
// and the chat template the directory names.
void fuzz_hf_config(const uint8_t* data, size_t size);
// tokenizer.json NUL tokenizer_config.json NUL generation_config.json NUL config.json: the
// tokenizer of a Hugging Face directory, then encoding and decoding a fixed text with it.
void fuzz_tokenizer_json(const uint8_t* data, size_t size);
// A GGUF file whose tokenizer.ggml.* metadata builds a tokenizer ('llama' writes a
// sentencepiece model for libsentencepiece), then a fixed text through it.
void fuzz_gguf_tokenizer(const uint8_t* data, size_t size);
// A sentencepiece model (tokenizer.model): kvlm's protobuf reader, then the tokenizer.
void fuzz_spm_model(const uint8_t* data, size_t size);
// Byte 0 picks one of the test models' tokenizers and what to do; the rest is text to
// encode (checked to decode back where the tokenizer is lossless) or ids to decode.
void fuzz_tokenize(const uint8_t* data, size_t size);
// Jinja NUL --template name NUL message NUL message...: detection, render and next_turn.
void fuzz_chat_template(const uint8_t* data, size_t size);
// A --kv spec and a --kv-list: parse, write back, and build the strategies.
void fuzz_kv_spec(const uint8_t* data, size_t size);
// A --json file of passkey, needle or sweep, read and drawn as --replot does.
void fuzz_replot(const uint8_t* data, size_t size);

struct Target {
  const char* name;
  void (*run)(const uint8_t* data, size_t size);
  size_t max_len;  // the longest input worth trying
};
const std::vector<Target>& targets();

// Inputs that start each target's corpus: files from tests/data and ones made with the
// test writers. `make fuzz` writes them to build/fuzz/corpus/<target>/; the test binary
// runs them.
struct Seed {
  std::string name;
  std::string bytes;
};
std::vector<Seed> seeds(const std::string& target);

}  // namespace kvlm::fuzz
