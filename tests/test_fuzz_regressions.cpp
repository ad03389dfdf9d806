// The fuzz harnesses (tests/fuzz/targets.h) on the inputs that once broke kvlm
// (tests/data/fuzz/<target>/<bug>) and on their seeds, so a fixed bug stays fixed without
// clang or libFuzzer. A harness that throws anything but the refusals it expects fails
// here; a memory error shows under DEBUG=1 (AddressSanitizer + UBSan).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/fuzz/targets.h"

namespace kvlm::fuzz {
namespace {

namespace fs = std::filesystem;

const Target* find_target(const std::string& name) {
  for (const Target& t : targets())
    if (name == t.name) return &t;
  return nullptr;
}

void replay(const Target& target, const std::string& bytes) {
  try {
    target.run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  } catch (const std::exception& e) {
    ADD_FAILURE() << "fuzz_" << target.name << " threw: " << e.what();
  }
}

TEST(FuzzRegressions, FoundInputsReplay) {
  const fs::path root = "tests/data/fuzz";
  ASSERT_TRUE(fs::is_directory(root)) << root << " is missing (run from the repository root)";
  int files = 0;
  for (const fs::directory_entry& dir : fs::directory_iterator(root)) {
    const Target* target = find_target(dir.path().filename().string());
    ASSERT_NE(target, nullptr) << dir.path() << " is not named after a fuzz target";
    for (const fs::directory_entry& file : fs::directory_iterator(dir.path())) {
      SCOPED_TRACE(file.path().string());
      std::ifstream in(file.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << in.rdbuf();
      replay(*target, bytes.str());
      files++;
    }
  }
  EXPECT_GT(files, 0);
}

TEST(FuzzRegressions, SeedsReplay) {
  for (const Target& target : targets()) {
    const std::vector<Seed> seeds = fuzz::seeds(target.name);
    EXPECT_FALSE(seeds.empty()) << target.name;
    for (const Seed& seed : seeds) {
      SCOPED_TRACE(std::string(target.name) + " seed " + seed.name);
      EXPECT_LE(seed.bytes.size(), target.max_len) << "the fuzzer would cut this seed short";
      replay(target, seed.bytes);
    }
  }
}

}  // namespace
}  // namespace kvlm::fuzz
