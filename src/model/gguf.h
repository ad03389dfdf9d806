// GGUF reader (versions 2 and 3): the file is mmapped, every offset, size and count is
// checked against the file size before it is used, and tensor data is handed out as
// pointers into the mapping. Nothing is copied or converted here (see dequant.h).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "model/mapped_file.h"
#include "weight_type.h"

namespace kvlm::gguf {

// Thrown for every malformed or unsupported file; what() starts with the file path.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};

// ggml tensor types kvlm reads (their ggml ids). Other ids are rejected at load, by name.
enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, BF16 = 30,
};

struct Value;
using Array = std::vector<Value>;
// One metadata value. Integers keep their width in `type`; arrays hold their elements.
struct Value {
  ValueType type = ValueType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, Array> data;
};

struct TensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // dims[0] varies fastest (a PyTorch [out, in] weight is {in, out})
  TensorType type = TensorType::F32;
  uint64_t offset = 0;         // relative to the data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping, valid while the File lives
};

class File {
 public:
  explicit File(const std::string& path);  // throws Error
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return map_->size(); }
  uint64_t alignment() const { return alignment_; }

  bool has(const std::string& key) const { return metadata_.count(key) != 0; }
  const Value* find(const std::string& key) const;
  const std::map<std::string, Value>& metadata() const { return metadata_; }

  // Typed getters throw Error("<path>: metadata key '<key>' is missing / has type X, expected Y").
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;      // any integer type (u64 beyond int64 throws)
  double get_float(const std::string& key) const;     // f32, f64 or any integer type
  bool get_bool(const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& key) const;  // array of strings
  std::vector<double> get_floats(const std::string& key) const;        // array of numbers
  std::vector<int64_t> get_ints(const std::string& key) const;         // array of integers
  // Defaults when the key is absent (a present key of the wrong type still throws).
  std::string get_string(const std::string& key, const std::string& fallback) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent

 private:
  struct Parser;  // gguf.cpp: fills the members below from the mapping

  std::string path_;
  std::unique_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::map<std::string, Value> metadata_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

const char* type_name(TensorType t);
// The storage type kvlm keeps a tensor of this type in (the same bytes).
WeightType weight_type(TensorType t);
const char* type_name(ValueType t);
// Bytes needed for n elements of a tensor type; throws Error when n is not a whole number
// of blocks for a block-quantised type.
uint64_t tensor_bytes(TensorType t, uint64_t n_elements);

}  // namespace kvlm::gguf
