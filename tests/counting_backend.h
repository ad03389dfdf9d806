// CountingBackend: a Backend that forwards every call to another backend and counts it by
// name, so a test can see what one forward pass issues (how many ops, host <-> backend
// copies, allocations) without a GPU. The merge ops (merge_backend.h) are forwarded too
// when the wrapped backend has them, so MiniCache runs through it.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "backend.h"
#include "merge_backend.h"

namespace kvlm::test {

class CountingBackend final : public Backend, public MergeBackend {
 public:
  explicit CountingBackend(Backend& inner)
      : inner_(inner), inner_merge_(dynamic_cast<MergeBackend*>(&inner)) {}

  // Calls per op name since construction or the last reset(): the ops of backend.h and
  // merge_backend.h by their own names, and "alloc", "release", "upload", "download",
  // "upload_weights", "release_matrix".
  const std::map<std::string, int64_t>& counts() const { return counts_; }
  int64_t count(const std::string& name) const {
    auto it = counts_.find(name);
    return it == counts_.end() ? 0 : it->second;
  }
  // Calls of the ops that compute (neither memory management nor host copies).
  int64_t compute_ops() const {
    int64_t n = 0;
    for (const auto& [name, calls] : counts_)
      if (!kMemoryCalls.contains(name)) n += calls;
    return n;
  }
  void reset() { counts_.clear(); }

  std::string name() const override { return "counting " + inner_.name(); }

  float* alloc(size_t n_floats) override { return hit("alloc"), inner_.alloc(n_floats); }
  void release(float* p) override { hit("release"), inner_.release(p); }
  void upload(float* dst, const float* host_src, size_t n) override {
    hit("upload"), inner_.upload(dst, host_src, n);
  }
  void download(float* host_dst, const float* src, size_t n) override {
    hit("download"), inner_.download(host_dst, src, n);
  }
  WeightType weight_type_for(WeightType stored) const override {
    return inner_.weight_type_for(stored);
  }
  WeightMatrix upload_weights(const std::vector<WeightRows>& parts, int cols,
                              bool host_outlives) override {
    return hit("upload_weights"), inner_.upload_weights(parts, cols, host_outlives);
  }
  void release_matrix(const WeightMatrix& w) override {
    hit("release_matrix"), inner_.release_matrix(w);
  }

  void embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) override {
    hit("embedding"), inner_.embedding(out, table, ids, T);
  }
  void rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
               float eps) override {
    hit("rmsnorm"), inner_.rmsnorm(out, x, weight, T, dim, eps);
  }
  void add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T, int dim,
                   float eps) override {
    hit("add_rmsnorm"), inner_.add_rmsnorm(out, x, y, weight, T, dim, eps);
  }
  void matmul(float* out, const float* x, const WeightMatrix& w, int T) override {
    hit("matmul"), inner_.matmul(out, x, w, T);
  }
  void rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq, int T,
               int n_heads, int n_kv_heads, int head_dim, int rope_dim,
               bool adjacent_pairs) override {
    hit("rope_qk"), inner_.rope_qk(q_out, qkv, first_position, inv_freq, T, n_heads, n_kv_heads,
                                   head_dim, rope_dim, adjacent_pairs);
  }
  void swiglu(float* out, const float* gate_up, int T, int ffn_dim) override {
    hit("swiglu"), inner_.swiglu(out, gate_up, T, ffn_dim);
  }
  void attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                 int n_heads, int head_dim) override {
    hit("attention"), inner_.attention(out, q, kv, T, n_heads, head_dim);
  }
  void attention_scores(float* out, int stride, const float* q, const std::vector<KVHeadView>& kv,
                        int T, int first_row, int n_rows, int n_heads, int head_dim,
                        bool average) override {
    hit("attention_scores"), inner_.attention_scores(out, stride, q, kv, T, first_row, n_rows,
                                                     n_heads, head_dim, average);
  }
  void key_norms(float* out, const KVHeadView& head, int head_dim) override {
    hit("key_norms"), inner_.key_norms(out, head, head_dim);
  }
  void newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) override {
    hit("newest_key_norms"), inner_.newest_key_norms(out, kv, head_dim);
  }
  void append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                 const float* values, int row_stride, int head_dim, int T) override {
    hit("append_kv"), inner_.append_kv(dst, dtype, keys, values, row_stride, head_dim, T);
  }
  void copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride, int rows,
                 size_t row_bytes) override {
    hit("copy_rows"), inner_.copy_rows(dst, dst_stride, src, src_stride, rows, row_bytes);
  }
  void compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) override {
    hit("compact_rows"), inner_.compact_rows(buf, keep, n, row_bytes);
  }
  void rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                   const float* inv_freq, int rope_dim, bool adjacent_pairs) override {
    hit("rotate_keys"), inner_.rotate_keys(keys, dtype, shifts, n, head_dim, inv_freq, rope_dim,
                                           adjacent_pairs);
  }
  double read_bandwidth(size_t bytes) override {
    return hit("read_bandwidth"), inner_.read_bandwidth(bytes);
  }

  void pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows, const void* b,
                   const int32_t* b_rows, int n, int head_dim) override {
    hit("pair_angles"), merge().pair_angles(out, dtype, a, a_rows, b, b_rows, n, head_dim);
  }
  void merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                  const int32_t* a_rows, const void* b, const int32_t* b_rows, int n, int head_dim,
                  float t) override {
    hit("merge_pair"),
        merge().merge_pair(dir, mag_a, mag_b, dtype, a, a_rows, b, b_rows, n, head_dim, t);
  }
  void restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                    const float* mag, int n, int head_dim) override {
    hit("restore_rows"), merge().restore_rows(out, out_rows, dtype, dir, mag, n, head_dim);
  }

 private:
  inline static const std::set<std::string> kMemoryCalls = {
      "alloc", "release", "upload", "download", "upload_weights", "release_matrix"};

  void hit(const char* name) { counts_[name]++; }
  MergeBackend& merge() { return inner_merge_ ? *inner_merge_ : merge_ops(inner_); }

  Backend& inner_;
  MergeBackend* inner_merge_;
  std::map<std::string, int64_t> counts_;
};

}  // namespace kvlm::test
