// Random-weight models of real shapes, named "random:<shape>" wherever a model path goes
// (`kvlm bench --model random:llama2-7b --device cuda`), for speed work where the real
// checkpoints cannot be carried. The configuration is the published one (Hugging Face
// config.json); weights are drawn from a fixed seed with the spread of Hugging Face's
// initialisation (mean 0, standard deviation 0.02; norms 1), so activations stay finite;
// the tokenizer is byte-level with the real vocabulary size. The text it writes is noise:
// only the speed and the memory mean anything.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "model/config.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

// True for "random:..." paths.
bool is_random_model(const std::string& path);
// The shapes "random:" knows: llama2-7b, llama3-8b, tinyllama-1.1b, smollm2-135m.
std::vector<std::string> random_model_shapes();
// Throws std::runtime_error naming the path and listing the shapes when it is unknown.
ModelConfig random_model_config(const std::string& path);
std::unique_ptr<Tokenizer> random_model_tokenizer(const ModelConfig& c);
// Every weight of the model, as a count (what the real checkpoint holds).
uint64_t random_model_parameters(const ModelConfig& c);
std::unique_ptr<Model> load_random_model(const ModelConfig& c, Backend& backend);

}  // namespace kvlm
