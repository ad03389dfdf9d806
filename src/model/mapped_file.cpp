#include "model/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace kvlm {

namespace {

// Closes the descriptor on every path out of the constructor; the mapping outlives it.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

}  // namespace

MappedFile::MappedFile(const std::string& path, const std::string& kind) : path_(path) {
  auto fail = [&](const std::string& message) { throw std::runtime_error(path_ + ": " + message); };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(std::string("cannot open: ") + std::strerror(errno));
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(std::string("cannot stat: ") + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) fail("is a directory, not a " + kind);
  if (!S_ISREG(st.st_mode)) fail("is not a regular file");
  if (st.st_size == 0) fail("empty file (0 bytes), not a " + kind);
  size_ = static_cast<uint64_t>(st.st_size);

  void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) fail(std::string("cannot mmap: ") + std::strerror(errno));
  // Decode reads every weight once per token, a page after the other: in 4 KiB pages each
  // one costs a TLB miss (and a nested page walk in a VM). Asking for huge pages before the
  // first read lets the kernel read the file into 2 MiB page-cache folios and map them
  // whole, where the filesystem supports it (ext4, xfs, tmpfs on recent kernels); a file
  // already cached in small pages stays in them. Advice only: a refusal changes nothing.
  ::madvise(map, size_, MADV_HUGEPAGE);
  data_ = static_cast<const uint8_t*>(map);
}

MappedFile::~MappedFile() { ::munmap(const_cast<uint8_t*>(data_), size_); }

}  // namespace kvlm
