// Test helper: builds GGUF files in memory or on disk, so tests can make tiny models and
// deliberately broken files without shipping binaries.
//
//   kvlm::test::GGUFWriter w;                       // version 3, alignment 32
//   w.set("general.architecture", "llama");
//   w.set("llama.block_count", uint32_t{2});
//   w.set("tokenizer.ggml.tokens", std::vector<std::string>{"a", "b"});
//   w.add_tensor("token_embd.weight", {64, 2}, gguf::TensorType::Q8_0, floats);  // {in, out}
//   kvlm::test::TempFile file("tiny.gguf");
//   w.write(file.path());
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/gguf.h"

namespace kvlm::test {

// Encodes float data as a ggml tensor type with ggml's reference quantisers (round to
// nearest, one f16 scale per block of 32). Block types need a multiple of 32 values.
std::vector<uint8_t> quantize(gguf::TensorType type, const std::vector<float>& values);

class GGUFWriter {
 public:
  // Any version number is written into the header; the layout is always that of v2/v3,
  // so other numbers only serve to test that readers reject them.
  explicit GGUFWriter(uint32_t version = 3) : version_(version) {}
  void set_version(uint32_t version) { version_ = version; }

  // Metadata. The C++ type of the value picks the GGUF type (uint32_t -> u32, float ->
  // f32, const char* -> string, ...). Setting a key again replaces its value in place.
  void set(const std::string& key, uint8_t v);
  void set(const std::string& key, int8_t v);
  void set(const std::string& key, uint16_t v);
  void set(const std::string& key, int16_t v);
  void set(const std::string& key, uint32_t v);
  void set(const std::string& key, int32_t v);
  void set(const std::string& key, uint64_t v);
  void set(const std::string& key, int64_t v);
  void set(const std::string& key, float v);
  void set(const std::string& key, double v);
  void set(const std::string& key, bool v);
  void set(const std::string& key, const char* v);
  void set(const std::string& key, const std::string& v);
  void set(const std::string& key, const std::vector<std::string>& v);
  void set(const std::string& key, const std::vector<float>& v);
  void set(const std::string& key, const std::vector<int32_t>& v);
  void set(const std::string& key, const std::vector<uint32_t>& v);
  // Any value, nested arrays included. An array's element type is its first element's
  // type (all elements must share it); an empty array is written as an array of u8.
  void set(const std::string& key, const gguf::Value& v);
  // A value type id and its already-encoded bytes, for values no reader should accept.
  void set_raw(const std::string& key, uint32_t value_type, std::vector<uint8_t> payload);
  // Writes general.alignment (u32) and lays the data section out with it. Setting that
  // key to anything but a nonzero power of two keeps the layout at the default 32.
  void set_alignment(uint32_t alignment) { set("general.alignment", alignment); }

  // Tensors, stored in the order added. dims are in GGUF order: dims[0] varies fastest,
  // so a PyTorch [out, in] weight is {in, out}. values.size() must equal the dims product.
  void add_tensor(const std::string& name, std::vector<uint64_t> dims, gguf::TensorType type,
                  const std::vector<float>& values);
  // Already-encoded data under any ggml type id (unchecked), e.g. for unsupported types.
  void add_raw_tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t ggml_type,
                      std::vector<uint8_t> data);

  // The whole file. It ends right after the last tensor's data, so cutting off any byte
  // makes it invalid.
  std::vector<uint8_t> bytes() const;
  void write(const std::string& path) const;  // throws std::runtime_error on I/O failure

 private:
  struct Entry {
    std::string key;
    uint32_t value_type;
    std::vector<uint8_t> payload;  // the value as encoded in the file
  };
  struct Tensor {
    std::string name;
    std::vector<uint64_t> dims;
    uint32_t ggml_type;
    std::vector<uint8_t> data;
  };

  void put(const std::string& key, uint32_t value_type, std::vector<uint8_t> payload);
  uint64_t alignment() const;

  uint32_t version_;
  std::vector<Entry> metadata_;
  std::vector<Tensor> tensors_;
};

// Writes bytes to a file, throwing std::runtime_error on failure.
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);

// A unique path under testing::TempDir(), removed (if it exists) on destruction.
class TempFile {
 public:
  explicit TempFile(const std::string& name);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace kvlm::test
