// ModelConfig from a Hugging Face model directory's config.json, read as transformers'
// LlamaConfig reads it: optional fields that are absent (or null) take its defaults,
// rope scaling comes from `rope_scaling` or (transformers 5) `rope_parameters`.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "model/config.h"

namespace kvlm {

// Reads <dir>/config.json, and <dir>/generation_config.json when present (its bos/eos ids
// replace config.json's, as generate() uses them). Throws std::runtime_error naming the
// file and the key that is missing, mistyped or unsupported.
ModelConfig config_from_hf_directory(const std::string& dir);

// The parsing behind it, for a config already in memory; `source` names it in errors.
ModelConfig config_from_hf_json(const nlohmann::json& config, const std::string& source);

struct SourcedText {
  std::string text;    // "" when absent
  std::string source;  // the file it came from, or "none"
};

// The chat template of a Hugging Face directory: chat_template.jinja when present (newer
// transformers save it there), else tokenizer_config.json's chat_template, a string or a
// list of {name, template} of which "default" is the chat template.
SourcedText chat_template_from_hf_directory(const std::string& dir);

}  // namespace kvlm
