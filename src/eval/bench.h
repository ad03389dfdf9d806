// kvlm bench: prefill and decode throughput per KV method, against the memory roofline.
#pragma once
#include <string>
#include <vector>

#include "session.h"

namespace kvlm {

struct BenchOptions {
  int prompt_len = 512;
  int gen = 128;
  std::vector<KVSpec> kv_list = {KVSpec::parse("full")};
  uint64_t seed = 42;
  std::string json_path;  // "" = none
  int report_every = 0;   // > 0: a line every this many decoded tokens (a soak test)
};

int run_bench(Session& session, const BenchOptions& options);

}  // namespace kvlm
