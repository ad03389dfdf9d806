#include "tests/safetensors_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>

#include "model/dequant.h"
#include "tests/gguf_writer.h"

namespace kvlm::test {

void SafetensorsWriter::add(const std::string& name, const std::string& dtype,
                            std::vector<uint64_t> shape, const std::vector<float>& values) {
  const uint64_t begin = data_.size();
  for (float v : values) {
    if (dtype == "F32") {
      uint8_t b[4];
      std::memcpy(b, &v, 4);
      data_.insert(data_.end(), b, b + 4);
    } else {
      const uint16_t h = dtype == "F16" ? f32_to_f16(v) : f32_to_bf16(v);
      data_.push_back(uint8_t(h & 0xFF));
      data_.push_back(uint8_t(h >> 8));
    }
  }
  header_[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {begin, data_.size()}}};
}

std::vector<uint8_t> SafetensorsWriter::bytes() const {
  return safetensors_bytes(header_.dump(), data_);
}

void SafetensorsWriter::write(const std::string& path) const { write_file(path, bytes()); }

std::vector<uint8_t> safetensors_bytes(const std::string& header_text,
                                       const std::vector<uint8_t>& data) {
  std::vector<uint8_t> out;
  const uint64_t n = header_text.size();
  for (int byte = 0; byte < 8; byte++) out.push_back(uint8_t(n >> (8 * byte)));  // little-endian
  out.insert(out.end(), header_text.begin(), header_text.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  write_file(path, {text.begin(), text.end()});
}

TempDir::TempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  path_ = ::testing::TempDir() + "kvlm_" + std::to_string(::getpid()) + "_" +
          std::to_string(counter++) + "_" + name;
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace kvlm::test
