// Opening a model file: configuration, tokenizer, chat template and tensor table first
// (cheap, for `kvlm info`), weights on a backend second.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

struct TensorSummary {
  std::string name;
  std::string type;            // "Q4_1", "F32", ...
  std::vector<uint64_t> shape; // PyTorch order: [out, in]
};

class ModelFile {
 public:
  // Throws std::runtime_error naming the path and what is wrong with it. A path
  // "random:<shape>" opens a random-weight model of a real shape (model/random_model.h).
  explicit ModelFile(const std::string& path);
  ~ModelFile();

  const std::string& path() const { return path_; }
  std::string format() const;  // e.g. "GGUF v3"
  const ModelConfig& config() const { return config_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& chat_template() const { return chat_template_; }  // "" when absent
  std::vector<TensorSummary> tensors() const;
  size_t file_bytes() const;
  uint64_t parameter_count() const;

  // Dequantises every weight to float32 and moves it onto the backend.
  std::unique_ptr<Model> load(Backend& backend) const;

 private:
  std::string path_;
  std::unique_ptr<gguf::File> gguf_;
  ModelConfig config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
};

// The Llama hyper-parameters stored in a GGUF file's metadata.
ModelConfig config_from_gguf(const gguf::File& file);

}  // namespace kvlm
