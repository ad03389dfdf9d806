// Every backend op against a plain scalar reference written here, on random inputs and
// edge sizes. The suite is parameterised by backend so the CUDA backend runs the very
// same cases (it joins the list when it exists and a GPU is visible).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "backend_fixture.h"
#include "gguf_writer.h"
#include "kernels/cpu/simd.h"
#include "model/dequant.h"

namespace kvlm {
namespace {

using test::Buf;
using test::random_vector;

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); i++)
    ASSERT_NEAR(got[i], want[i], tol * (1.0f + std::fabs(want[i]))) << what << " at " << i;
}

class Kernels : public test::BackendTest {};

TEST_P(Kernels, MatmulMatchesNaive) {
  Backend& b = *backend;
  for (auto [T, n_in, n_out] : {std::tuple{1, 64, 5}, {1, 576, 192}, {3, 33, 7}, {4, 64, 4},
                                {5, 100, 9}, {31, 576, 36}, {33, 17, 65}, {64, 128, 128}}) {
    auto x = random_vector(size_t(T) * n_in, 1), w = random_vector(size_t(n_out) * n_in, 2);
    std::vector<float> want(size_t(T) * n_out);
    for (int t = 0; t < T; t++)
      for (int o = 0; o < n_out; o++) {
        double s = 0;
        for (int i = 0; i < n_in; i++) s += double(x[t * n_in + i]) * w[o * n_in + i];
        want[t * n_out + o] = float(s);
      }
    Buf bx(b, x), out(b, want.size());
    test::Matrix bw(b, w, n_out, n_in);
    b.matmul(out.ptr, bx.ptr, bw.m, T);
    expect_close(out.host(), want, 1e-4f, "matmul " + std::to_string(T) + "x" +
                                              std::to_string(n_in) + "x" + std::to_string(n_out));
  }
}

// The values a weight (or activation) holds once stored in a 16-bit type: ggml's
// round-to-nearest-even conversions, an independent implementation of the rounding.
std::vector<float> rounded_to(DType t, const std::vector<float>& v) {
  const gguf::TensorType type = t == DType::F16 ? gguf::TensorType::F16 : gguf::TensorType::BF16;
  std::vector<float> out(v.size());
  dequantize(type, test::quantize(type, v).data(), out.data(), out.size());
  return out;
}

// Half-precision weights, float32 sums. T == 1 reads x unrounded; T > 1 rounds x to the
// weight type first (backend.h), so the reference rounds exactly what the backend rounds
// and the only difference left is the order of float32 additions.
TEST_P(Kernels, MatmulWithHalfWeights) {
  if (GetParam() == "cpu") GTEST_SKIP() << "the cpu backend keeps weights in f32";
  for (DType dtype : {DType::F16, DType::BF16}) {
    auto b = make_backend(GetParam(), dtype_name(dtype), 0);
    for (auto [T, n_in, n_out] : {std::tuple{1, 576, 192}, {1, 33, 7}, {1, 4096, 64},
                                  {7, 576, 96}, {64, 128, 130}}) {
      auto x = random_vector(size_t(T) * n_in, 11), w = random_vector(size_t(n_out) * n_in, 12);
      const std::vector<float> w16 = rounded_to(dtype, w), x16 = T > 1 ? rounded_to(dtype, x) : x;
      std::vector<float> want(size_t(T) * n_out);
      for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
          double s = 0;
          for (int i = 0; i < n_in; i++) s += double(x16[t * n_in + i]) * w16[o * n_in + i];
          want[t * n_out + o] = float(s);
        }
      Buf bx(*b, x), out(*b, want.size());
      test::Matrix bw(*b, w, n_out, n_in);
      EXPECT_EQ(bw.m.dtype, dtype);
      b->matmul(out.ptr, bx.ptr, bw.m, T);
      expect_close(out.host(), want, 1e-4f, std::string(dtype_name(dtype)) + " matmul T=" +
                                               std::to_string(T) + " n_in=" + std::to_string(n_in));
    }
  }
}

TEST_P(Kernels, EmbeddingWithHalfWeights) {
  if (GetParam() == "cpu") GTEST_SKIP() << "the cpu backend keeps weights in f32";
  for (DType dtype : {DType::F16, DType::BF16}) {
    auto b = make_backend(GetParam(), dtype_name(dtype), 0);
    const int vocab = 50, dim = 72;
    auto table = random_vector(vocab * dim, 13);
    const std::vector<float> want_rows = rounded_to(dtype, table);
    std::vector<int32_t> ids = {49, 0, 7, 7};
    test::Matrix bt(*b, table, vocab, dim);
    Buf out(*b, ids.size() * dim);
    b->embedding(out.ptr, bt.m, ids.data(), int(ids.size()));
    std::vector<float> got = out.host();
    for (size_t t = 0; t < ids.size(); t++)
      for (int i = 0; i < dim; i++)
        ASSERT_EQ(got[t * dim + i], want_rows[ids[t] * dim + i]) << dtype_name(dtype);
  }
}

TEST(Backends, CpuRefusesHalfWeightsAndUnknownDevicesAreErrors) {
  EXPECT_THROW(make_backend("cpu", "f16", 1), std::invalid_argument);
  EXPECT_THROW(make_backend("tpu", "", 1), std::invalid_argument);
  auto cpu = make_backend("cpu", "", 1);
  test::Matrix m(*cpu, std::vector<float>(6), 2, 3);
  EXPECT_EQ(m.m.dtype, DType::F32);
  if (cuda_gpu_count() == 0) {
    EXPECT_THROW(make_backend("cuda", "f16", 1), std::runtime_error);
  }
}

TEST(Backends, DeviceFlagsResolveOnceToAChoice) {
  EXPECT_EQ(resolve_device("cpu", "").weights, DType::F32);
  const DeviceChoice cuda = resolve_device("cuda", "");
  EXPECT_EQ(cuda.device, Device::Cuda) << "a plan for cuda needs no GPU";
  EXPECT_EQ(cuda.weights, DType::F16);
  EXPECT_EQ(resolve_device("cuda", "bf16").weights, DType::BF16);
  EXPECT_EQ(resolve_device("", "").device, cuda_gpu_count() > 0 ? Device::Cuda : Device::Cpu);
  EXPECT_THROW(resolve_device("cpu", "f16"), std::invalid_argument);
  EXPECT_THROW(resolve_device("cpu", "f8"), std::invalid_argument);
  EXPECT_THROW(resolve_device("tpu", ""), std::invalid_argument);
}

// The probe kvlm bench divides by: a real, finite rate. 64 MiB is past the CPU caches
// here; the bound is loose on purpose (a busy machine reads slower, never 0).
TEST_P(Kernels, ReadBandwidthIsARealRate) {
  const double bytes_per_second = backend->read_bandwidth(size_t(64) << 20);
  EXPECT_TRUE(std::isfinite(bytes_per_second));
  EXPECT_GT(bytes_per_second, 1e8);
}

TEST_P(Kernels, RmsnormMatchesNaive) {
  Backend& b = *backend;
  const int T = 3, dim = 576;
  auto x = random_vector(T * dim, 3, 5.0f), w = random_vector(dim, 4);
  std::vector<float> want(T * dim);
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += double(x[t * dim + i]) * x[t * dim + i];
    double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int i = 0; i < dim; i++) want[t * dim + i] = float(x[t * dim + i] * scale * w[i]);
  }
  Buf bx(b, x), bw(b, w), out(b, want.size());
  b.rmsnorm(out.ptr, bx.ptr, bw.ptr, T, dim, 1e-5f);
  expect_close(out.host(), want, 1e-5f, "rmsnorm");
}

TEST_P(Kernels, AddRmsnormAddsTheResidualThenNorms) {
  Backend& b = *backend;
  const int T = 3, dim = 576;
  auto x = random_vector(T * dim, 3, 5.0f), y = random_vector(T * dim, 9, 2.0f),
       w = random_vector(dim, 4);
  std::vector<float> sum(T * dim), want(T * dim);
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < dim; i++) {
      sum[t * dim + i] = x[t * dim + i] + y[t * dim + i];
      ss += double(sum[t * dim + i]) * sum[t * dim + i];
    }
    double scale = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int i = 0; i < dim; i++) want[t * dim + i] = float(sum[t * dim + i] * scale * w[i]);
  }
  {
    Buf bx(b, x), by(b, y), bw(b, w), out(b, want.size());
    b.add_rmsnorm(out.ptr, bx.ptr, by.ptr, bw.ptr, T, dim, 1e-5f);
    expect_close(bx.host(), sum, 1e-6f, "add_rmsnorm: x += y");
    expect_close(out.host(), want, 1e-5f, "add_rmsnorm");
  }
  // The forward pass writes the norm over the y it adds.
  Buf bx(b, x), by(b, y), bw(b, w);
  b.add_rmsnorm(by.ptr, bx.ptr, by.ptr, bw.ptr, T, dim, 1e-5f);
  expect_close(by.host(), want, 1e-5f, "add_rmsnorm with out = y");
}

// A toy by hand: head_dim 4, pairs (0, 2) and (1, 3) turning at 90 and 0 degrees per
// position; one query head and one key head at position 1.
TEST_P(Kernels, RopeQkToyTurnsTheFirstPairAQuarter) {
  Backend& b = *backend;
  const float quarter = float(M_PI / 2);
  // Row: query (1, 2, 3, 4), key (5, 6, 7, 8), value (9, 10, 11, 12).
  std::vector<float> qkv = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  Buf bqkv(b, qkv), bf(b, std::vector<float>{quarter, 0.0f}), q(b, 4);
  b.rope_qk(q.ptr, bqkv.ptr, 1, bf.ptr, 1, 1, 1, 4, 4);
  // (a, b) turned a quarter is (-b, a): pair (1, 3) -> (-3, 1); pair (2, 4) stays.
  expect_close(q.host(), {-3, 2, 1, 4}, 1e-6f, "query");
  expect_close(bqkv.host(), {1, 2, 3, 4, -7, 6, 5, 8, 9, 10, 11, 12}, 1e-6f,
               "key turned in place; query input and values untouched");
}

TEST_P(Kernels, RopeQkMatchesNaive) {
  Backend& b = *backend;
  const int T = 3, n_heads = 4, n_kv = 2;
  for (int head_dim : {64, 128}) {
    for (int rope_dim : {head_dim, head_dim / 2}) {
      for (int first : {0, 39998}) {  // positions past 40000 need the angle in double
        SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", rope_dim " +
                     std::to_string(rope_dim) + ", first position " + std::to_string(first));
        const int half = rope_dim / 2, q_dim = n_heads * head_dim;
        const int row = (n_heads + 2 * n_kv) * head_dim;
        auto qkv = random_vector(size_t(T) * row, 5);
        std::vector<float> inv_freq(half);
        for (int i = 0; i < half; i++) inv_freq[i] = std::pow(10000.0f, -2.0f * i / rope_dim);
        std::vector<float> want_qkv = qkv, want_q(size_t(T) * q_dim);
        for (int t = 0; t < T; t++) {
          for (int h = 0; h < n_heads + n_kv; h++)  // queries, then keys
            for (int i = 0; i < half; i++) {
              float* v = &want_qkv[size_t(t) * row + h * head_dim];
              double a = double(first + t) * inv_freq[i];
              float x0 = v[i], x1 = v[i + half];
              v[i] = float(x0 * std::cos(a) - x1 * std::sin(a));
              v[i + half] = float(x0 * std::sin(a) + x1 * std::cos(a));
            }
          std::copy_n(&want_qkv[size_t(t) * row], q_dim, &want_q[size_t(t) * q_dim]);
          std::copy_n(&qkv[size_t(t) * row], q_dim, &want_qkv[size_t(t) * row]);  // read only
        }
        Buf bqkv(b, qkv), bf(b, inv_freq), q(b, want_q.size());
        b.rope_qk(q.ptr, bqkv.ptr, first, bf.ptr, T, n_heads, n_kv, head_dim, rope_dim);
        std::vector<float> got_q = q.host();
        expect_close(got_q, want_q, 1e-5f, "queries");
        expect_close(bqkv.host(), want_qkv, 1e-5f, "keys (queries and values unchanged)");
        if (first == 0)  // position 0 is the identity
          for (int i = 0; i < q_dim; i++) ASSERT_EQ(got_q[i], qkv[i]);
      }
    }
  }
}

TEST_P(Kernels, SwigluOfTheFusedGateUp) {
  Backend& b = *backend;
  const int T = 3, ffn = 5000;
  auto gate_up = random_vector(size_t(T) * 2 * ffn, 6, 3.0f);
  std::vector<float> want(size_t(T) * ffn);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < ffn; i++) {
      const double g = gate_up[size_t(t) * 2 * ffn + i], u = gate_up[size_t(t) * 2 * ffn + ffn + i];
      want[size_t(t) * ffn + i] = float(g / (1.0 + std::exp(-g)) * u);
    }
  Buf bg(b, gate_up), out(b, want.size());
  b.swiglu(out.ptr, bg.ptr, T, ffn);
  expect_close(out.host(), want, 1e-5f, "swiglu");
  // By hand: silu(0) = 0, silu(x) ~ x for large x.
  Buf toy(b, std::vector<float>{0, 30, 7, 2}), toy_out(b, 2);
  b.swiglu(toy_out.ptr, toy.ptr, 1, 2);
  expect_close(toy_out.host(), {0, 60}, 1e-6f, "swiglu toy");
}

TEST_P(Kernels, EmbeddingCopiesRows) {
  Backend& b = *backend;
  const int vocab = 10, dim = 8;
  auto table = random_vector(vocab * dim, 8);
  std::vector<int32_t> ids = {3, 0, 9, 3};
  test::Matrix bt(b, table, vocab, dim);
  Buf out(b, ids.size() * dim);
  b.embedding(out.ptr, bt.m, ids.data(), int(ids.size()));
  std::vector<float> got = out.host();
  for (size_t t = 0; t < ids.size(); t++)
    for (int i = 0; i < dim; i++) EXPECT_EQ(got[t * dim + i], table[ids[t] * dim + i]);
}

// Naive causal attention over per-head caches whose last T rows are the new tokens.
std::vector<float> naive_attention(const std::vector<float>& q,
                                   const std::vector<std::vector<float>>& keys,
                                   const std::vector<std::vector<float>>& values,
                                   const std::vector<int>& lens, int T, int n_heads, int d) {
  const int group = n_heads / int(lens.size());
  std::vector<float> out(size_t(T) * n_heads * d, 0.0f);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < n_heads; h++) {
      int kv = h / group, visible = lens[kv] - T + t + 1;
      std::vector<double> p(visible);
      double mx = -1e300, sum = 0;
      for (int j = 0; j < visible; j++) {
        double s = 0;
        for (int i = 0; i < d; i++) s += double(q[(t * n_heads + h) * d + i]) * keys[kv][j * d + i];
        p[j] = s / std::sqrt(double(d));
        mx = std::max(mx, p[j]);
      }
      for (double& v : p) sum += v = std::exp(v - mx);
      for (int j = 0; j < visible; j++)
        for (int i = 0; i < d; i++) out[(t * n_heads + h) * d + i] += float(p[j] / sum * values[kv][j * d + i]);
    }
  return out;
}

TEST_P(Kernels, AttentionOverRaggedCache) {
  Backend& b = *backend;
  struct Case { int T, n_heads, d; std::vector<int> lens; };
  for (const Case& c : std::vector<Case>{{1, 4, 64, {1, 5}},        // decode, GQA group 2
                                         {1, 9, 64, {31, 32, 33}},  // SmolLM2's shape, ragged
                                         {5, 2, 128, {5, 12}},      // prefill from empty + continued
                                         {32, 3, 64, {33, 64, 100}},
                                         {100, 6, 64, {150, 100}},  // many query and key blocks
                                         {17, 2, 80, {20, 17}},     // head dim not a multiple of 16
                                         {1, 2, 64, {4097, 1}},
                                         {1, 8, 128, {4097, 33}},   // decode, many chunks
                                         {1, 32, 64, {31, 4097}},   // GQA group 16
                                         {1, 4, 128, {1, 31, 32, 33}},
                                         {31, 2, 128, {31, 32}},
                                         {33, 4, 128, {33, 4097}},  // continued prefill, long cache
                                         {64, 2, 64, {64, 65}}}) {
    const int n_kv = int(c.lens.size());
    std::vector<std::vector<float>> keys, values;
    std::vector<std::unique_ptr<Buf>> bufs;
    std::vector<KVHeadView> view;
    for (int h = 0; h < n_kv; h++) {
      keys.push_back(random_vector(size_t(c.lens[h]) * c.d, 10 + h));
      values.push_back(random_vector(size_t(c.lens[h]) * c.d, 20 + h));
      bufs.push_back(std::make_unique<Buf>(b, keys.back()));
      bufs.push_back(std::make_unique<Buf>(b, values.back()));
      view.push_back({bufs[bufs.size() - 2]->ptr, bufs.back()->ptr, c.lens[h]});
    }
    auto q = random_vector(size_t(c.T) * c.n_heads * c.d, 30, 2.0f);
    Buf bq(b, q), out(b, q.size());
    b.attention(out.ptr, bq.ptr, view, c.T, c.n_heads, c.d);
    expect_close(out.host(), naive_attention(q, keys, values, c.lens, c.T, c.n_heads, c.d), 1e-4f,
                 "attention T=" + std::to_string(c.T));
  }
}

// attention_scores: the probabilities attention() uses, summed or averaged over chosen rows.
TEST_P(Kernels, AttentionScoresAreTheSoftmaxRows) {
  Backend& b = *backend;
  const int T = 6, n_heads = 4, d = 16;
  const std::vector<int> lens = {9, 6};  // ragged: head 0 holds 3 older tokens
  std::vector<std::vector<float>> keys;
  std::vector<std::unique_ptr<Buf>> bufs;
  std::vector<KVHeadView> view;
  for (size_t h = 0; h < lens.size(); h++) {
    keys.push_back(random_vector(size_t(lens[h]) * d, 50 + h));
    bufs.push_back(std::make_unique<Buf>(b, keys.back()));
    view.push_back({bufs.back()->ptr, bufs.back()->ptr, lens[h]});
  }
  auto q = random_vector(size_t(T) * n_heads * d, 60, 2.0f);
  Buf bq(b, q);
  for (auto [first, rows, average] : {std::tuple{4, 2, true}, {0, 6, false}, {5, 1, false}}) {
    const int stride = 9;
    Buf out(b, size_t(n_heads) * stride);
    b.attention_scores(out.ptr, stride, bq.ptr, view, T, first, rows, n_heads, d, average);
    std::vector<float> got = out.host();
    for (int h = 0; h < n_heads; h++) {
      const int kv = h / 2, len = lens[kv];
      std::vector<double> want(len, 0.0);
      for (int t = first; t < first + rows; t++) {
        const int visible = len - T + t + 1;
        std::vector<double> p(visible);
        double mx = -1e300, sum = 0;
        for (int j = 0; j < visible; j++) {
          double s = 0;
          for (int i = 0; i < d; i++) s += double(q[(t * n_heads + h) * d + i]) * keys[kv][j * d + i];
          mx = std::max(mx, p[j] = s / std::sqrt(double(d)));
        }
        for (double& v : p) sum += v = std::exp(v - mx);
        for (int j = 0; j < visible; j++) want[j] += p[j] / sum / (average ? rows : 1);
      }
      for (int j = 0; j < len; j++)
        EXPECT_NEAR(got[h * stride + j], want[j], 1e-5) << "head " << h << " slot " << j;
    }
  }
}

// One query row (a decode step) over ragged heads, one of them empty: each row is the
// softmax over its KV head's slots; slots past a head's length are left alone.
TEST_P(Kernels, DecodeAttentionScoresOverRaggedHeads) {
  Backend& b = *backend;
  const int n_heads = 6, d = 128;
  const std::vector<int> lens = {0, 4097, 33};
  std::vector<std::vector<float>> keys;
  std::vector<std::unique_ptr<Buf>> bufs;
  std::vector<KVHeadView> view;
  for (size_t h = 0; h < lens.size(); h++) {
    keys.push_back(random_vector(size_t(lens[h]) * d, 80 + h));
    bufs.push_back(std::make_unique<Buf>(b, keys.back()));
    view.push_back({bufs.back()->ptr, bufs.back()->ptr, lens[h]});
  }
  auto q = random_vector(size_t(n_heads) * d, 90, 2.0f);
  const int stride = 4100;
  const std::vector<float> sentinel(size_t(n_heads) * stride, -7.0f);
  Buf bq(b, q), out(b, sentinel);
  b.attention_scores(out.ptr, stride, bq.ptr, view, 1, 0, 1, n_heads, d, false);
  std::vector<float> got = out.host();
  for (int h = 0; h < n_heads; h++) {
    const int kv = h / 2, len = lens[kv];
    std::vector<double> p(len);
    double mx = -1e300, sum = 0;
    for (int j = 0; j < len; j++) {
      double s = 0;
      for (int i = 0; i < d; i++) s += double(q[h * d + i]) * keys[kv][size_t(j) * d + i];
      mx = std::max(mx, p[j] = s / std::sqrt(double(d)));
    }
    for (double& v : p) sum += v = std::exp(v - mx);
    for (int j = 0; j < len; j++)
      ASSERT_NEAR(got[size_t(h) * stride + j], p[j] / sum, 1e-5) << "head " << h << " slot " << j;
    for (int j = len; j < stride; j++) ASSERT_EQ(got[size_t(h) * stride + j], -7.0f) << "head " << h;
  }
}

TEST_P(Kernels, KeyNorms) {
  Backend& b = *backend;
  for (auto [d, len] : {std::pair{64, 33}, {80, 33}, {128, 1}, {128, 4097}, {64, 0}}) {
    auto k = random_vector(size_t(len) * d, 70);
    Buf bk(b, k), out(b, std::vector<float>(std::max(len, 1), -7.0f));
    b.key_norms(out.ptr, bk.ptr, len, d);
    std::vector<float> got = out.host();
    for (int j = 0; j < len; j++) {
      double s = 0;
      for (int i = 0; i < d; i++) s += double(k[j * d + i]) * k[j * d + i];
      ASSERT_NEAR(got[j], std::sqrt(s), 1e-5 * std::sqrt(s));
    }
    if (len == 0) {
      EXPECT_EQ(got[0], -7.0f) << "an empty head writes nothing";
    }
  }
}

TEST_P(Kernels, CopyAndCompactRows) {
  Backend& b = *backend;
  const int rows = 6, cols = 4;
  auto src = random_vector(rows * 2 * cols, 40);
  Buf bs(b, src), dst(b, rows * cols);
  b.copy_rows(dst.ptr, cols, bs.ptr + cols, 2 * cols, rows, cols);  // the odd half of each row
  std::vector<float> got = dst.host();
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) EXPECT_EQ(got[r * cols + c], src[r * 2 * cols + cols + c]);

  std::vector<int32_t> keep = {0, 2, 3, 5};
  b.compact_rows(dst.ptr, keep.data(), int(keep.size()), cols);
  std::vector<float> compacted = dst.host();
  for (size_t r = 0; r < keep.size(); r++)
    for (int c = 0; c < cols; c++) EXPECT_EQ(compacted[r * cols + c], got[keep[r] * cols + c]);
}

// A long cache compacted in place: on a GPU many rows move at once, and a row's old place
// may be another row's new one, so this catches a move that is not race-free.
TEST_P(Kernels, CompactManyRowsInPlace) {
  Backend& b = *backend;
  const int rows = 4097, cols = 128;
  auto data = random_vector(size_t(rows) * cols, 41);
  std::mt19937 rng(5);
  std::vector<int32_t> keep;
  for (int r = 0; r < rows; r++)
    if (rng() % 3 != 0) keep.push_back(r);  // about two thirds, gaps of every length
  Buf buf(b, data);
  b.compact_rows(buf.ptr, keep.data(), int(keep.size()), cols);
  b.compact_rows(buf.ptr, keep.data(), 0, cols);  // nothing kept: nothing moves
  std::vector<float> got = buf.host();
  for (size_t r = 0; r < keep.size(); r++)
    for (int c = 0; c < cols; c++)
      ASSERT_EQ(got[r * cols + c], data[size_t(keep[r]) * cols + c]) << "row " << r;
}

// The vectorised exp the CPU attention uses, against the C library's.
TEST(Simd, ExpMatchesLibm) {
  for (float x = -100.0f; x < 88.3f; x += 0.37f) {  // softmax only needs x <= 0
    simd::Vec v = simd::exp(simd::broadcast(x));
    float want = std::exp(x);
    if (x < -87.3f) EXPECT_LT(v[0], 1e-37f);
    else EXPECT_NEAR(v[0], want, 3e-7f * want) << "x = " << x;
  }
}

INSTANTIATE_TEST_SUITE_P(, Kernels, ::testing::Values("cpu", "cuda"), test::backend_param_name);

}  // namespace
}  // namespace kvlm
