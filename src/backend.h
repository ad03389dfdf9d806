// Backend: the operations the forward pass and the KV cache are written against.
// CpuBackend (kernels/cpu) is the reference and is always built; the CUDA backend
// implements the same interface with kernels of the same names (kernels/cuda).
//
// Buffers are float arrays in the backend's own memory (host for the CPU, device for the
// GPU), made with alloc() and released with release(). Small integer inputs (token ids,
// positions) are host arrays; a device backend copies them itself.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvlm {

// The live keys and values of one KV head: `len` rows of head_dim floats each.
struct KVHeadView {
  const float* keys = nullptr;
  const float* values = nullptr;
  int len = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory -------------------------------------------------------------------------
  virtual float* alloc(size_t n_floats) = 0;
  virtual void release(float* p) = 0;
  virtual void upload(float* dst, const float* host_src, size_t n) = 0;
  virtual void download(float* host_dst, const float* src, size_t n) = 0;

  // ---- ops (shapes are row-major; T = tokens in this call) ------------------------------
  // out[t] = table[ids[t]]                                    table [vocab][dim]
  virtual void embedding(float* out, const float* table, const int32_t* ids, int T, int dim) = 0;
  // out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight         x, out [T][dim]
  virtual void rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                       float eps) = 0;
  // out[t][o] = sum_i x[t][i] * w[o][i]                       w [n_out][n_in] (PyTorch layout)
  virtual void matmul(float* out, const float* x, const float* w, int T, int n_in,
                      int n_out) = 0;
  // Rotary embedding in the rotate-half layout: in every head, the pair (x[i], x[i + rope_dim/2])
  // turns by positions[t] * inv_freq[i].                       x [T][n_heads * head_dim]
  virtual void rope(float* x, const int32_t* positions, const float* inv_freq, int T,
                    int n_heads, int head_dim, int rope_dim) = 0;
  // out = silu(gate) * up, elementwise                         (the SwiGLU activation)
  virtual void swiglu(float* out, const float* gate, const float* up, size_t n) = 0;
  // x += y
  virtual void add(float* x, const float* y, size_t n) = 0;
  // Causal attention of T new query tokens over a ragged cache whose last T rows (per head)
  // are those same tokens: query t sees rows [0, len - T + t]. Query head h reads KV head
  // h / (n_heads / kv.size()), so GQA needs no copies.      q, out [T][n_heads * head_dim]
  virtual void attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                         int n_heads, int head_dim) = 0;

  // ---- cache movement -------------------------------------------------------------------
  // dst[r * dst_stride + c] = src[r * src_stride + c] for r < rows, c < cols
  virtual void copy_rows(float* dst, int dst_stride, const float* src, int src_stride, int rows,
                         int cols) = 0;
  // Moves rows keep[0..n) of buf [*][cols] to rows 0..n, in order. keep is ascending, so
  // every row moves towards the front and the move can happen in place.
  virtual void compact_rows(float* buf, const int32_t* keep, int n, int cols) = 0;
};

}  // namespace kvlm
