// How much memory a model needs on a device at a given context: what `kvlm info` prints
// and what a session checks against the GPU's free memory before loading. Each line is
// reported by the part that owns it; the plan only adds them up.
#pragma once
#include <string>
#include <vector>

#include "device.h"
#include "model/load.h"

namespace kvlm {

struct MemoryPlan {
  struct Item {
    std::string what;
    double bytes;
    std::string detail;
  };
  std::vector<Item> items;
  double total() const;
  std::string text() const;  // one aligned line per item, then the total
};

// The checkpoint's weight matrices in the types the device keeps them in (norms float32),
// a KV cache of ctx tokens in its dtype, the activations of a ctx-token prompt run in one
// call (the largest a session makes), and the backend's own scratch for such a call.
MemoryPlan plan_memory(const Checkpoint& checkpoint, int ctx, const DeviceChoice& device);

}  // namespace kvlm
