// KVObserver: what stands between the forward pass and a KV strategy.
//
// The forward pass calls it three times per call: begin_call before the first layer,
// after_attention once per layer (the layer's keys are in the cache and its queries
// attended), end_call after the last layer. The observer computes on the backend only what
// the strategy's needs() asks for, hands it over as Observations, and keeps the time that
// took (bench reports it as the scoring share of prefill).
//
// Call kinds: a call of more than one token is a prefill (a prompt, or the next chat turn
// over what the cache holds); a one-token call is a decode step. A call on an empty cache
// starts a new sequence: the strategy hears begin_sequence first.
#pragma once
#include <functional>
#include <vector>

#include "backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"

namespace kvlm {

class KVObserver {
 public:
  // n_heads, head_dim: the model's query heads (the cache knows its KV heads).
  KVObserver(Backend& backend, KVStrategy& strategy, int n_heads, int head_dim);
  ~KVObserver();
  KVObserver(const KVObserver&) = delete;
  KVObserver& operator=(const KVObserver&) = delete;

  KVStrategy& strategy() { return strategy_; }
  // Called with each layer's index as its attention finishes (a progress line uses it);
  // empty for none.
  void on_layer_done(std::function<void(int layer)> f) { layer_done_ = std::move(f); }
  // Seconds spent computing observations since construction.
  double seconds() const { return seconds_; }

  void begin_call(KVCache& cache, int n_new);
  // q: this call's rotated queries on the backend, [n_new][n_heads * head_dim]; view: the
  // layer's cache as attention just read it (so nothing is gathered twice).
  void after_attention(KVCache& cache, int layer, const float* q,
                       const std::vector<KVHeadView>& view);
  // After every layer appended and the cache advanced past the call.
  void end_call(KVCache& cache);

  // ---- shared prefill (one prefill, several methods: Session::prefill_shared) ----------
  // While set, every prefill call also computes, for each entry of `needs`, what a
  // strategy with those needs would observe at each layer, for take_recorded().
  void record(std::vector<Needs> needs) { recording_ = std::move(needs), recorded_.clear(); }
  // [entry of record()'s needs][layer]
  std::vector<std::vector<Observation>> take_recorded() { return std::move(recorded_); }
  // Runs the strategy over a prefill another cache already holds, as the forward pass
  // would have: layer by layer, `source`'s rows join the empty `cache`, then the strategy
  // sees the observation recorded for its needs (else std::logic_error); then the cache
  // advances and after_prefill runs. Since a method evicts a layer only after that layer's
  // attention, no hidden state of the prompt depends on the method, so this equals the
  // method's own prefill, bit for bit.
  void replay_prefill(KVCache& cache, const KVCache& source, const std::vector<Needs>& needs,
                      const std::vector<std::vector<Observation>>& recorded);

 private:
  // Per query head, the softmax attention of query rows [first_row, first_row + n_rows) of
  // this call over the slots of its KV head, summed (or averaged), copied to the host in
  // one download.
  std::vector<std::vector<float>> attention_rows(const std::vector<KVHeadView>& view,
                                                 const float* q, int first_row, int n_rows,
                                                 bool average);
  // Per KV head, the norm of every key, copied to the host in one download.
  std::vector<std::vector<float>> key_norms(const std::vector<KVHeadView>& view);
  // What a prefill call's strategy with `needs` observes at `layer`.
  Observation observe(const KVCache& cache, int layer, const float* q,
                      const std::vector<KVHeadView>& view, const Needs& needs);
  // A backend buffer grown by doubling, so steady steps allocate nothing.
  struct DeviceBuffer {
    float* data = nullptr;
    size_t floats = 0;
  };
  float* grow(DeviceBuffer& buffer, size_t n_floats);

  Backend& backend_;
  KVStrategy& strategy_;
  int n_heads_, head_dim_;
  double seconds_ = 0;
  // The call in progress:
  int n_new_ = 0;
  Needs needs_;
  DecodeObservation decode_;
  std::function<void(int)> layer_done_;
  DeviceBuffer scores_;         // attention rows and key norms, downloaded as computed
  DeviceBuffer newest_norms_;  // a decode step's [layer][KV head] key norms, downloaded at its end
  std::vector<float> host_;    // what was downloaded last
  std::vector<Needs> recording_;                       // record(): what to observe as well
  std::vector<std::vector<Observation>> recorded_;     // [entry][layer]
};

}  // namespace kvlm
