// Backend: the operations the forward pass and the KV cache are written against.
// CpuBackend (kernels/cpu) is the reference and is always built; the CUDA backend
// implements the same interface with kernels of the same names (kernels/cuda).
//
// Buffers are float arrays in the backend's own memory (host for the CPU, device for the
// GPU), made with alloc() and released with release(). Small integer inputs (token ids,
// row lists) are host arrays; a device backend copies them itself. Positions are passed by
// value (the first one; a call's tokens are consecutive), so RoPE copies nothing.
//
// Ops that only one KV method needs live in interfaces of their own that a backend also
// implements (merge_backend.h: cross-layer merging), so this list stays the forward pass's.
//
// Weight matrices are where a model's bytes are, so they alone keep the file's storage
// type (src/weight_type.h: float types and ggml's quantised blocks) unless a conversion is
// asked for: weight_type_for() says what a backend stores a file type as, and only
// matmul/embedding read them.
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "weight_type.h"

namespace kvlm {

enum class DType { F32, F16, BF16 };

inline const char* dtype_name(DType t) {
  return t == DType::F32 ? "f32" : t == DType::F16 ? "f16" : "bf16";
}
inline size_t dtype_bytes(DType t) { return t == DType::F32 ? 4 : 2; }

// The weight types that are plain floats, as DTypes and back.
inline DType float_dtype(WeightType t) {
  return t == WeightType::F16 ? DType::F16 : t == WeightType::BF16 ? DType::BF16 : DType::F32;
}
inline WeightType weight_type(DType t) {
  return t == DType::F16 ? WeightType::F16 : t == DType::BF16 ? WeightType::BF16 : WeightType::F32;
}

// A run of rows of one weight type, in host memory (upload_weights' input) or in backend
// memory (a WeightMatrix part): rows * weight_row_bytes(type, cols) bytes.
struct WeightRows {
  const void* data = nullptr;
  WeightType type = WeightType::F32;
  int rows = 0;
};

// A [rows][cols] matrix (PyTorch layout: rows = outputs, cols = inputs), stored as one or
// more runs of rows, each in its own type. Projections that read the same input are one
// matrix of several parts (a Q4_K_M file stores wq and wk in Q4_K and wv in Q6_K), so the
// forward pass runs them as one matmul without converting or copying any of them.
struct WeightMatrix {
  std::vector<WeightRows> parts;
  int rows = 0, cols = 0;
  void* storage = nullptr;  // what the backend allocated for the parts (nullptr: none)

  bool empty() const { return parts.empty(); }
  size_t bytes() const {
    size_t total = 0;
    for (const WeightRows& p : parts) total += size_t(p.rows) * weight_row_bytes(p.type, cols);
    return total;
  }
};

// Thrown by alloc()/upload_weights() when the backend's memory cannot hold a request; the
// message says how much was asked for and how much was free.
struct OutOfMemory : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The live keys and values of one KV head: `len` rows of head_dim values each, stored in
// the cache's KV dtype (every head of a view has the same one). Kernels convert rows to
// float32 as they read them; scores, sums and outputs are float32 whatever the dtype.
struct KVHeadView {
  const void* keys = nullptr;
  const void* values = nullptr;
  int len = 0;
  DType dtype = DType::F32;
};

// Where append_kv writes one KV head's new rows (storage in the cache's KV dtype).
struct KVAppendTarget {
  void* keys = nullptr;
  void* values = nullptr;
};

// The host-side checks of the ops over a cache view, shared by every backend so that
// they reject the same calls with the same messages (std::invalid_argument naming `op`):
// a device kernel given a group of 0 would divide by zero instead.
// The message is built only when a check fails: these run on every attention call.
[[noreturn]] inline void reject_kv_call(const char* op, const std::string& what) {
  throw std::invalid_argument(std::string(op) + ": " + what);
}

inline void check_kv_view(const char* op, const std::vector<KVHeadView>& kv, int n_heads,
                          int head_dim) {
  if (kv.empty()) reject_kv_call(op, "no KV heads");
  if (n_heads <= 0 || n_heads % int(kv.size()) != 0)
    reject_kv_call(op, std::to_string(n_heads) + " query heads are not a multiple of " +
                           std::to_string(kv.size()) + " KV heads");
  if (head_dim <= 0) reject_kv_call(op, "head dim " + std::to_string(head_dim));
  for (const KVHeadView& h : kv) {
    if (h.dtype != kv[0].dtype)
      reject_kv_call(op, std::string("KV heads stored in both ") + dtype_name(kv[0].dtype) +
                             " and " + dtype_name(h.dtype));
    if (h.len < 0) reject_kv_call(op, "a KV head of length " + std::to_string(h.len));
  }
}

// attention_scores' own arguments: the rows lie in [0, T) and a row of out holds the
// longest head.
inline void check_score_rows(const char* op, const std::vector<KVHeadView>& kv, int stride, int T,
                             int first_row, int n_rows) {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > T)
    reject_kv_call(op, "rows [" + std::to_string(first_row) + ", " +
                           std::to_string(first_row + n_rows) + ") are not within the " +
                           std::to_string(T) + " new tokens");
  for (const KVHeadView& h : kv)
    if (h.len > stride)
      reject_kv_call(op, "stride " + std::to_string(stride) + " is shorter than a KV head of " +
                             std::to_string(h.len) + " slots");
}

// newest_key_norms' own argument: every head holds the token whose key it measures.
inline void check_newest_rows(const char* op, const std::vector<KVHeadView>& kv) {
  for (size_t h = 0; h < kv.size(); h++)
    if (kv[h].len == 0) reject_kv_call(op, "KV head " + std::to_string(h) + " is empty");
}

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------------------
  virtual float* alloc(size_t n_floats) = 0;
  virtual void release(float* p) = 0;
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;
  // The type this backend stores a matrix of file type `stored` in (its own default, or
  // the conversion it was made with: --dtype).
  virtual WeightType weight_type_for(WeightType stored) const = 0;
  // A [rows][cols] matrix from runs of host rows stacked in order, each converted to
  // weight_type_for(its type). `host_outlives`: the host memory stays valid and unchanged
  // for the matrix's life (a mapped model file), so a backend that computes in host memory
  // keeps pointers to the rows it needs no conversion for instead of copying them.
  virtual WeightMatrix upload_weights(const std::vector<WeightRows>& parts, int cols,
                                      bool host_outlives) = 0;
  // Host [rows][cols] float32 (copied; random models and tests).
  WeightMatrix upload_matrix(const float* host, int rows, int cols) {
    return upload_weights({{host, WeightType::F32, rows}}, cols, false);
  }
  virtual void release_matrix(const WeightMatrix& w) = 0;

  // ---- ops (shapes are row-major; T = tokens in this call) ------------------------------
  // out[t] = table[ids[t]]                                    table [vocab][dim]
  virtual void embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) = 0;
  // out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight         x, out [T][dim]
  virtual void rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                       float eps) = 0;
  // out[t][o] = sum_i x[t][i] * w[o][i], summed in float32.  x [T][w.cols], out [T][w.rows]
  // A backend may round x on the way: the CPU quantises it to 8 bits per block against
  // quantised weights (kernels/cpu/quant.h), the CUDA backend rounds it to f16/bf16 for
  // the tensor cores when T > 1.
  virtual void matmul(float* out, const float* x, const WeightMatrix& w, int T) = 0;
  // x += y, then out = rmsnorm(x): a residual add and the norm that follows it, in one
  // pass over x. out may be y (each row of y is read before that row of out is written).
  //                                                            x, y, out [T][dim]
  virtual void add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T,
                           int dim, float eps) = 0;
  // Rotary embedding of one layer's fused projection qkv [T][q_dim + 2 * kv_dim] (each row:
  // n_heads query heads, n_kv_heads key heads, then the values). In every head the pairs
  // of the first rope_dim dimensions turn by (first_position + t) * inv_freq[i]: pair i is
  // (x[i], x[i + rope_dim/2]) (Hugging Face's rotate-half layout), or (x[2i], x[2i + 1])
  // when `adjacent_pairs` (GGUF files, whose converter reordered the Q/K rows that way).
  // The rotated queries go to q_out [T][q_dim] (contiguous, as attention() reads them);
  // the keys turn in place; the values are left alone.
  virtual void rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq,
                       int T, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
                       bool adjacent_pairs) = 0;
  // out[t][i] = silu(gate_up[t][i]) * gate_up[t][ffn_dim + i]  (the SwiGLU activation of
  // the fused gate/up projection)                  gate_up [T][2 * ffn_dim], out [T][ffn_dim]
  virtual void swiglu(float* out, const float* gate_up, int T, int ffn_dim) = 0;
  // Causal attention of T new query tokens over a ragged cache whose last T rows (per head)
  // are those same tokens: query t sees rows [0, len - T + t]. Query head h reads KV head
  // h / (n_heads / kv.size()), so GQA needs no copies.      q, out [T][n_heads * head_dim]
  // A query row that sees no rows at all (a head emptied by a KV method) gets 0, not 0/0.
  // Throws std::invalid_argument unless kv is non-empty, n_heads % kv.size() == 0,
  // head_dim > 0 and every head has the same dtype.
  virtual void attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                         int n_heads, int head_dim) = 0;

  // ---- observations for KV strategies (computed only when a strategy asks) -----------
  // Softmax attention of the query rows [first_row, first_row + n_rows) of this call's T
  // new tokens over their visible slots (as in attention()), summed over those rows, or
  // averaged when `average`. out [n_heads][stride]: row h holds the kv[h / group].len
  // slots of its KV head; stride >= the longest KV head. With n_rows == 0 those slots are
  // 0. Throws std::invalid_argument as attention() does, and for a short stride or rows
  // outside [0, T).
  virtual void attention_scores(float* out, int stride, const float* q,
                                const std::vector<KVHeadView>& kv, int T, int first_row,
                                int n_rows, int n_heads, int head_dim, bool average) = 0;
  // out[j] = ||head.keys[j]||_2 for j < head.len.
  virtual void key_norms(float* out, const KVHeadView& head, int head_dim) = 0;
  // out[h] = the norm of kv[h]'s last key, for every KV head of a layer in one op: the key
  // a decode step just appended (KNorm ranks it against the rest). Throws
  // std::invalid_argument as attention() does (with n_heads = kv.size()) and for an empty head.
  virtual void newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) = 0;

  // ---- cache movement (rows of any dtype, counted in bytes) -----------------------------
  // Writes the T new rows of every KV head of one layer, rounded from float32 to `dtype`:
  // row t of head h, keys[t * row_stride + h * head_dim + c] (c < head_dim), goes to row t
  // of dst[h].keys; the same for values. dst.size() heads; keys, values are float32.
  virtual void append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                         const float* values, int row_stride, int head_dim, int T) = 0;
  // Row r (row_bytes bytes) of src, at src + r * src_stride bytes, to dst + r * dst_stride.
  virtual void copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride,
                         int rows, size_t row_bytes) = 0;
  // Moves rows keep[0..n) of buf (row_bytes bytes each) to rows 0..n, in order. keep is
  // ascending, so every row moves towards the front and the move can happen in place.
  virtual void compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) = 0;
  // Turns key row r of `keys` (n rows of head_dim in `dtype`, already rotated) by
  // shifts[r] more positions, as rope_qk would: a key cached after RoPE at position p reads
  // as if it had been rotated at p + shifts[r] (rotations add). Rows with shift 0 are left
  // alone. For caches that renumber positions when slots move (pos=cache). shifts is host
  // memory; inv_freq, rope_dim and adjacent_pairs are rope_qk's.
  virtual void rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                           const float* inv_freq, int rope_dim, bool adjacent_pairs) = 0;

  // ---- measurement ----------------------------------------------------------------------
  // Bytes per second this backend reads from its own memory, streaming a fresh buffer of
  // `bytes` (best of a few passes): the bandwidth a decode step's weight reads are held to.
  virtual double read_bandwidth(size_t bytes) = 0;
};

}  // namespace kvlm
