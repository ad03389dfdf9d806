// Running the kvlm executable from a test: arguments in, exit status and both streams out.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

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

// kvlm running in the background, for tests that signal it halfway: stdin from a file of
// `stdin_text`, stdout and stderr to files the test can read while it runs.
class Background {
 public:
  explicit Background(const std::string& args, const std::string& stdin_text = "")
      : dir_(fs::temp_directory_path() /
             ("kvlm_bg_" + std::to_string(::getpid()) + "_" + std::to_string(next_id()))) {
    fs::create_directories(dir_);
    std::ofstream(dir_ / "in", std::ios::binary) << stdin_text;
    const char* bin = std::getenv("KVLM_BIN");
    // exec: the signal goes to kvlm itself, not to a shell waiting for it.
    const std::string cmd = "exec " + std::string(bin ? bin : "./kvlm") + " " + args + " < " +
                            (dir_ / "in").string() + " > " + (dir_ / "out").string() + " 2> " +
                            (dir_ / "err").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~Background() {
    if (status_ < 0 && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  std::string out() const { return slurp(dir_ / "out"); }
  std::string err() const { return slurp(dir_ / "err"); }
  void signal(int sig) const { ::kill(pid_, sig); }

  // Polls until done() holds (true) or the process ends or timeout_s pass (false).
  template <class Condition>
  bool wait_until(Condition done, double timeout_s = 600) {
    const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < end) {
      if (done()) return true;
      if (exited()) return done();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // Times occurrences of `text` in stderr so far.
  int count_in_err(const std::string& text) const {
    const std::string e = err();
    int n = 0;
    for (size_t at = e.find(text); at != std::string::npos; at = e.find(text, at + 1)) n++;
    return n;
  }
  // Waits for the exit; the status as Result has it, -1 after timeout_s.
  int finish(double timeout_s = 600) {
    wait_until([this] { return exited(); }, timeout_s);
    return status_;
  }

 private:
  using Clock = std::chrono::steady_clock;
  static int next_id() {
    static int id = 0;
    return id++;
  }
  bool exited() {
    if (status_ >= 0) return true;
    int raw = 0;
    if (::waitpid(pid_, &raw, WNOHANG) != pid_) return false;
    status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
    return true;
  }

  fs::path dir_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// On the CPU: golden text is CPU-exact (with a GPU visible, cuda would be the default).
inline std::string model_flag() { return "--model " + quote(model_path()) + " --device cpu"; }

inline void expect_error(const Result& r, int status, const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr: " << r.err;
  EXPECT_EQ(r.out, "") << "no partial output";
}

}  // namespace kvlm::test::cli
