// The subcommands' bodies; src/main.cpp only declares flags and dispatches here.
#pragma once
#include <string>

#include "chat.h"
#include "session.h"

namespace kvlm {

struct RunOptions {
  std::string prompt;
  std::string prompt_file;
  int n_predict = 256;
  bool chat = false;   // wrap the prompt in the model's chat template
  bool stats = false;  // print generation and KV statistics to stderr
  std::string system;
  std::string json_path;
  SamplingParams sampling;
};

int run_command(const RuntimeOptions& rt, const RunOptions& o);
int info_command(const RuntimeOptions& rt);
int methods_command();

}  // namespace kvlm
