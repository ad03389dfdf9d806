// kvlm bench: prefill and decode throughput per KV method, against the memory roofline.
#pragma once
#include <string>
#include <vector>

#include "session.h"

namespace kvlm {

struct BenchOptions {
  int prompt_len = 512;
  int gen = 128;
  std::vector<std::string> kv_list = {"full"};
  uint64_t seed = 42;
  std::string json_path;  // "" = none
};

// Bytes of weights read from memory to produce one token (every matrix once).
double weight_bytes_per_token(const ModelConfig& c);
// Read bandwidth of this machine with the session's threads, in bytes/s (best of a few runs).
double measure_read_bandwidth();

int run_bench(Session& session, const BenchOptions& options);

}  // namespace kvlm
