// safetensors reader: an 8-byte little-endian header length, a JSON header mapping tensor
// names to {dtype, shape, data_offsets}, then the raw tensor bytes. The file is mmapped;
// the header length, every tensor's byte range (inside the data section, exactly
// elements x dtype size, overlapping no other) and every shape are checked before a
// tensor is handed out, so a corrupt file ends in a std::runtime_error naming file and
// tensor, never in a crash.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "model/mapped_file.h"
#include "model/tensor_view.h"

namespace kvlm::safetensors {

// One .safetensors file. Tensors keep the header's (name) order.
class File {
 public:
  explicit File(const std::string& path);  // throws std::runtime_error
  const std::string& path() const { return map_.path(); }
  uint64_t file_size() const { return map_.size(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }

 private:
  MappedFile map_;
  std::vector<TensorView> tensors_;
};

// The weights of a Hugging Face model directory: model.safetensors, or else the shards
// that model.safetensors.index.json's weight_map names (each must exist; a tensor may
// live in one shard only, and must be in the shard the map names).
class ShardSet {
 public:
  explicit ShardSet(const std::string& dir);  // throws std::runtime_error
  // The file the choice was made from: "model.safetensors" or "model.safetensors.index.json".
  const char* source() const;
  const std::vector<std::unique_ptr<File>>& files() const { return files_; }
  uint64_t total_bytes() const;

 private:
  bool sharded_ = false;
  std::vector<std::unique_ptr<File>> files_;
};

}  // namespace kvlm::safetensors
