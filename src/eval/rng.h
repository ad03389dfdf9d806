// The evaluations' random numbers: SplitMix64, small and the same on every platform, so a
// seed names the same prompts everywhere.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace kvlm {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n), n > 0 (the modulo bias is below 2^-40 for the sizes used here).
  int below(int n) { return int(next() % uint64_t(n)); }
  int between(int lo, int hi) { return lo + below(hi - lo + 1); }  // inclusive
  double uniform() { return double(next() >> 11) * 0x1.0p-53; }   // [0, 1)
  template <class T>
  const T& pick(const std::vector<T>& items) { return items[below(int(items.size()))]; }

 private:
  uint64_t state_;
};

// One seed from several numbers (e.g. the run's seed, a trial index, a stream id), so
// independent streams never share a sequence.
inline uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x6A09E667F3BCC909ull;
  for (uint64_t p : parts) h = SplitMix64(h ^ p).next();
  return h;
}

}  // namespace kvlm
