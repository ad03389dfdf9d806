// The GPU kit (`make gpu-kit`, tests/gpu_kit/): a folder that must travel with a device
// call, so it has a size limit, and must hold all that its run.sh uses. Skipped until the
// kit is built; inside the kit (run.sh runs this binary there) there is no build/ folder.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace kvlm {
namespace {

namespace fs = std::filesystem;

const fs::path kKit = "build/gpu-kit";
// What the device tool carries is 64 MiB, repository included.
constexpr uintmax_t kKitLimitBytes = 60ull << 20;

#define KVLM_REQUIRE_KIT() \
  if (!fs::exists(kKit)) GTEST_SKIP() << "no " << kKit << " here; `make gpu-kit` builds it"

uintmax_t folder_bytes(const fs::path& dir) {
  uintmax_t total = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) total += e.file_size();
  return total;
}

TEST(GpuKit, FitsUnderTheSizeLimit) {
  KVLM_REQUIRE_KIT();
  const uintmax_t bytes = folder_bytes(kKit);
  EXPECT_LT(bytes, kKitLimitBytes) << kKit << " holds " << (bytes >> 20) << " MiB";
  EXPECT_GT(bytes, 1u << 20) << "too small to hold the two binaries";
}

TEST(GpuKit, HoldsWhatRunShUses) {
  KVLM_REQUIRE_KIT();
  for (const char* file : {"kvlm", "kvlm_tests", "run.sh", "BUILD_INFO",
                           "lib/libsentencepiece.so.0", "tests/data/hf"})
    EXPECT_TRUE(fs::exists(kKit / file)) << "missing " << (kKit / file);
  for (const char* program : {"kvlm", "kvlm_tests", "run.sh"})
    EXPECT_NE(fs::status(kKit / program).permissions() & fs::perms::owner_exec, fs::perms::none)
        << program << " is not executable";
}

TEST(GpuKit, IsBuiltForAnyX86_64) {
  KVLM_REQUIRE_KIT();
  std::stringstream info;
  info << std::ifstream(kKit / "BUILD_INFO").rdbuf();
  EXPECT_NE(info.str().find("cxxflags"), std::string::npos) << info.str();
  EXPECT_EQ(info.str().find("-march=native"), std::string::npos) << info.str();
}

}  // namespace
}  // namespace kvlm
