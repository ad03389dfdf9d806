// The CPU backend: plain C++ kernels, a thread pool across cores (util/thread_pool.h says
// why not OpenMP), loops written so the compiler vectorises them. It is the reference the
// CUDA kernels are tested against.
#pragma once
#include <optional>
#include <vector>

#include "backend.h"
#include "kernels/cpu/simd.h"
#include "merge_backend.h"
#include "util/thread_pool.h"

namespace kvlm {

class CpuBackend final : public Backend, public MergeBackend {
 public:
  // n_threads <= 0 means all cores. Weight matrices keep the type they are uploaded in
  // (a mapped file's blocks are used where they lie), or are all converted to `convert_to`
  // (f32, f16 or bf16). bf16_prefill: where the CPU has AVX512-BF16, prefill multiplies
  // weights other than float32 in bf16 pairs (kernels/cpu/matmul.cpp), and attention's P.V
  // over a 16-bit cache too (attention.cpp); false keeps every product float32.
  explicit CpuBackend(int n_threads = 0, std::optional<WeightType> convert_to = {},
                      bool bf16_prefill = true);
  // matmul runs as prefill (weights rebuilt as panels) from this many tokens a call.
  static constexpr int kPanelsFromTokens = 16;
  // What matmul keeps beside the activations for `tokens` tokens of at most `widest_input`
  // inputs: the bf16 copy of a prefill's input, when it multiplies in bf16 pairs (asked for,
  // the CPU has them, and some weights are not f32), else 0.
  static size_t prefill_scratch_bytes(int tokens, int widest_input, bool bf16_prefill,
                                      bool all_f32);
  std::string name() const override;
  int threads() const { return pool_.threads(); }
  // Whether prefill multiplies in bf16 pairs (asked for, and this CPU has vdpbf16ps).
  bool bf16_prefill() const { return bf16_prefill_; }
  // Parallel operations issued so far: synchronisation points, for tests and benchmarks.
  uint64_t parallel_operations() const { return pool_.operations(); }

  float* alloc(size_t n_floats) override;
  void release(float* p) override;
  void upload(float* dst, const float* host_src, size_t n) override;
  void download(float* host_dst, const float* src, size_t n) override;
  WeightType weight_type_for(WeightType stored) const override;
  WeightMatrix upload_weights(const std::vector<WeightRows>& parts, int cols,
                              bool host_outlives) override;
  void release_matrix(const WeightMatrix& w) override;

  void embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) override;
  void rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
               float eps) override;
  void matmul(float* out, const float* x, const WeightMatrix& w, int T) override;
  void add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T, int dim,
                   float eps) override;
  void rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq, int T,
               int n_heads, int n_kv_heads, int head_dim, int rope_dim,
               bool adjacent_pairs) override;
  void swiglu(float* out, const float* gate_up, int T, int ffn_dim) override;
  void attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                 int n_heads, int head_dim) override;
  void attention_scores(float* out, int stride, const float* q, const std::vector<KVHeadView>& kv,
                        int T, int first_row, int n_rows, int n_heads, int head_dim,
                        bool average) override;
  void key_norms(float* out, const KVHeadView& head, int head_dim) override;
  void newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) override;
  void pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows, const void* b,
                   const int32_t* b_rows, int n, int head_dim) override;
  void merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                  const int32_t* a_rows, const void* b, const int32_t* b_rows, int n, int head_dim,
                  float t) override;
  void restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                    const float* mag, int n, int head_dim) override;
  void append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                 const float* values, int row_stride, int head_dim, int T) override;
  void copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride, int rows,
                 size_t row_bytes) override;
  void compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) override;
  void rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                   const float* inv_freq, int rope_dim, bool adjacent_pairs) override;
  double read_bandwidth(size_t bytes) override;

 private:
  // alloc, in 2 MiB pages where the kernel grants them if huge_pages: for memory read whole
  // every step (weights converted at load, the bandwidth probe that stands for them).
  float* alloc(size_t n_floats, bool huge_pages);

  ThreadPool pool_;
  std::optional<WeightType> convert_to_;
  bool bf16_prefill_;  // asked for and this CPU has vdpbf16ps
  // matmul's input rows in each activation format (kernels/cpu/quant.h), reused per call.
  std::vector<uint8_t> activations_;
  // Prefill's input rows rounded to bf16 pairs (kernels/cpu/strips.h), reused per call.
  std::vector<simd::BFloat16> rounded_x_;
};

}  // namespace kvlm
