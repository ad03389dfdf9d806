// Test helper (write_file for raw bytes is in gguf_writer.h): writes safetensors files (valid ones from float data, or any header/bytes
// a test wants to feed the reader) and Hugging Face model directories in temporary space.
//
//   kvlm::test::SafetensorsWriter w;
//   w.add("model.norm.weight", "F32", {64}, floats);
//   kvlm::test::TempDir dir("tiny");
//   w.write(dir.path() + "/model.safetensors");
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace kvlm::test {

class SafetensorsWriter {
 public:
  // dtype "F32", "F16" or "BF16": values are rounded to it (to nearest even).
  void add(const std::string& name, const std::string& dtype, std::vector<uint64_t> shape,
           const std::vector<float>& values);
  // The header as it will be written; tests may edit it before bytes()/write().
  nlohmann::json& header() { return header_; }
  std::vector<uint8_t> bytes() const;  // header length, header JSON, data
  void write(const std::string& path) const;

 private:
  nlohmann::json header_ = nlohmann::json::object();
  std::vector<uint8_t> data_;
};

// The 8-byte little-endian length, `header_text`, then `data`: any file at all.
std::vector<uint8_t> safetensors_bytes(const std::string& header_text,
                                       const std::vector<uint8_t>& data);

void write_text(const std::string& path, const std::string& text);

// A unique fresh directory under testing::TempDir(), removed with its contents on destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& name);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace kvlm::test
