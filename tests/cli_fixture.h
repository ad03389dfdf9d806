// Running the kvlm executable from a test: arguments in, exit status and both streams out.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "model_fixture.h"

namespace kvlm::test::cli {

namespace fs = std::filesystem;

struct Result {
  int status = -1;
  std::string out, err;
};

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs kvlm with the given arguments (already quoted where needed) and stdin text.
inline Result kvlm(const std::string& args, const std::string& stdin_text = "") {
  const char* bin = std::getenv("KVLM_BIN");
  fs::path dir = fs::temp_directory_path() / ("kvlm_cli_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "in") << stdin_text;
  std::string cmd = std::string(bin ? bin : "./kvlm") + " " + args + " < " + (dir / "in").string() +
                    " > " + (dir / "out").string() + " 2> " + (dir / "err").string();
  int raw = std::system(cmd.c_str());
  Result r{WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw), slurp(dir / "out"), slurp(dir / "err")};
  fs::remove_all(dir);
  return r;
}

// On the CPU: golden text is CPU-exact (with a GPU visible, cuda would be the default).
inline std::string model_flag() { return "--model " + quote(model_path()) + " --device cpu"; }

inline void expect_error(const Result& r, int status, const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(r.out, "") << "no partial output";
}

}  // namespace kvlm::test::cli
