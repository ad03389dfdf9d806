// A whole file mapped read-only into memory. Model readers (GGUF, safetensors) parse the
// bytes in place and hand out pointers into the mapping, valid while the MappedFile lives.
#pragma once
#include <cstdint>
#include <string>

namespace kvlm {

class MappedFile {
 public:
  // `kind` names what the file should be, for messages ("GGUF file"). Throws
  // std::runtime_error("<path>: ...") for a missing, unreadable, empty or non-regular file.
  MappedFile(const std::string& path, const std::string& kind);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace kvlm
