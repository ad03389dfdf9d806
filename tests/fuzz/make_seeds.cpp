// Writes every target's seeds into <dir>/<target>/, the corpus `make fuzz` starts from;
// with --list, prints each target's name and longest useful input for the fuzz loop.
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "tests/fuzz/targets.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR | --list (run from the repository root)\n", argv[0]);
    return 2;
  }
  if (std::string_view(argv[1]) == "--list") {
    for (const kvlm::fuzz::Target& target : kvlm::fuzz::targets())
      std::printf("%s %zu\n", target.name, target.max_len);
    return 0;
  }
  try {
    for (const kvlm::fuzz::Target& target : kvlm::fuzz::targets()) {
      const std::filesystem::path dir = std::filesystem::path(argv[1]) / target.name;
      std::filesystem::create_directories(dir);
      for (const kvlm::fuzz::Seed& seed : kvlm::fuzz::seeds(target.name)) {
        std::ofstream out(dir / seed.name, std::ios::binary | std::ios::trunc);
        out.write(seed.bytes.data(), std::streamsize(seed.bytes.size()));
        if (!out) throw std::runtime_error((dir / seed.name).string() + ": cannot write");
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
