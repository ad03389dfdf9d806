// Opening a model: a GGUF file or a Hugging Face directory (config.json + safetensors).
// Configuration and tensor table come first (cheap, for `kvlm info`), weights on a
// backend second. A Checkpoint is the weights and configuration alone; a ModelFile adds
// the tokenizer and chat template that run, chat and the evaluations need.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "model/config.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "model/tensor_view.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

class Checkpoint {
 public:
  // Throws std::runtime_error naming the path and what is wrong with it. A path
  // "random:<shape>" opens a random-weight model of a real shape (model/random_model.h).
  explicit Checkpoint(const std::string& path);
  ~Checkpoint();

  const std::string& path() const { return path_; }
  bool is_directory() const { return safetensors_ != nullptr; }
  bool is_random() const { return !gguf_ && !safetensors_; }
  // e.g. "GGUF v3", "Hugging Face safetensors (2 shards, F32)"
  std::string format() const;
  // Which loader was chosen and from which files, for `kvlm info`.
  std::string loader_reason() const;
  const ModelConfig& config() const { return config_; }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find_tensor(const std::string& name) const;  // nullptr when absent
  uint64_t file_bytes() const;  // all weight files together
  uint64_t parameter_count() const;

  // Hands every weight matrix to the backend in the file's own type (quantised blocks
  // included); the backend keeps it so, or converts it (Backend::weight_type_for). On the
  // CPU nothing is copied: the model reads the mapped file. `progress` (optional) hears
  // the share of the layers loaded so far.
  std::unique_ptr<Model> load(Backend& backend,
                              const std::function<void(double)>& progress = {}) const;

 protected:
  const gguf::File* gguf() const { return gguf_.get(); }  // nullptr for a directory

 private:
  std::string path_;
  // Shared with the weights of every model loaded from them: a CPU model reads its
  // matrices from these mappings.
  std::shared_ptr<gguf::File> gguf_;
  std::shared_ptr<safetensors::ShardSet> safetensors_;
  ModelConfig config_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

class ModelFile : public Checkpoint {
 public:
  // Throws std::runtime_error naming the path and what is wrong with it.
  explicit ModelFile(const std::string& path);

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  const std::string& chat_template() const { return chat_template_; }  // "" when absent
  // Where the template came from: "chat_template.jinja", "tokenizer_config.json",
  // "GGUF tokenizer.chat_template" or "none".
  const std::string& chat_template_source() const { return chat_template_source_; }

 private:
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string chat_template_;
  std::string chat_template_source_ = "none";
};

// The Llama hyper-parameters stored in a GGUF file's metadata.
ModelConfig config_from_gguf(const gguf::File& file);

}  // namespace kvlm
