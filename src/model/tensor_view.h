// A tensor as it lies in a mapped model file, whatever the format (GGUF, safetensors).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/gguf.h"

namespace kvlm {

struct TensorView {
  std::string name;               // as the file names it
  gguf::TensorType type = gguf::TensorType::F32;  // safetensors F32/F16/BF16 map onto these
  std::vector<uint64_t> shape;    // PyTorch order, slowest first: a weight is [out, in]
  uint64_t n_elements = 0;
  const uint8_t* data = nullptr;  // into the file's mapping, valid while the file lives
};

}  // namespace kvlm
