// Every backend op against a plain scalar reference written here, on random inputs and
// edge sizes. The suite is parameterised by backend so the CUDA backend runs the very
// same cases (it joins the list when it exists and a GPU is visible).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstring>
#include <random>

#include "backend_fixture.h"
#include "gguf_writer.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/strips.h"
#include "model/dequant.h"
#include "tests/random_weights.h"
#if KVLM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

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

// Half-precision weights, float32 sums. The reference rounds exactly what the backend
// rounds (below), so the only difference left is the order of float32 additions.
TEST_P(Kernels, MatmulWithHalfWeights) {
  for (DType dtype : {DType::F16, DType::BF16}) {
    auto b = make_backend(GetParam(), dtype_name(dtype), 0);
    for (auto [T, n_in, n_out] : {std::tuple{1, 576, 192}, {1, 33, 7}, {1, 4096, 64},
                                  {7, 576, 96}, {64, 128, 130}}) {
      auto x = random_vector(size_t(T) * n_in, 11), w = random_vector(size_t(n_out) * n_in, 12);
      // CUDA rounds x to the weights' type for T > 1; the CPU's prefill (T >= 16) rounds x
      // and the weights to bf16 where it multiplies in bf16 pairs.
      const auto* cpu = dynamic_cast<const CpuBackend*>(b.get());
      const bool pairs = cpu && cpu->bf16_prefill() && T >= 16;
      const bool rounds_x = T > 1 && GetParam() == "cuda";
      std::vector<float> w16 = rounded_to(dtype, w), x16 = rounds_x ? rounded_to(dtype, x) : x;
      if (pairs) w16 = rounded_to(DType::BF16, w16), x16 = rounded_to(DType::BF16, x);
      std::vector<float> want(size_t(T) * n_out);
      for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
          double s = 0;
          for (int i = 0; i < n_in; i++) s += double(x16[t * n_in + i]) * w16[o * n_in + i];
          want[t * n_out + o] = float(s);
        }
      Buf bx(*b, x), out(*b, want.size());
      test::Matrix bw(*b, w, n_out, n_in);
      EXPECT_EQ(bw.m.parts.at(0).type, weight_type(dtype));
      b->matmul(out.ptr, bx.ptr, bw.m, T);
      expect_close(out.host(), want, 1e-4f, std::string(dtype_name(dtype)) + " matmul T=" +
                                               std::to_string(T) + " n_in=" + std::to_string(n_in));
    }
  }
}

// `rows` random rows of `cols` weights of a type (tests/random_weights.h).
std::vector<uint8_t> random_rows(WeightType type, int rows, int cols, uint32_t seed) {
  std::mt19937 rng(seed);
  return test::random_weights(type, rows * cols, rng);
}

std::vector<float> dequantized(WeightType type, const std::vector<uint8_t>& rows, int cols) {
  std::vector<float> out(rows.size() / weight_row_bytes(type, cols) * cols);
  quant::dequantize_row(type, rows.data(), out.data(), int64_t(out.size()));
  return out;
}

const WeightType kEveryType[] = {WeightType::F32,  WeightType::F16,  WeightType::BF16,
                                 WeightType::Q4_0, WeightType::Q4_1, WeightType::Q5_0,
                                 WeightType::Q5_1, WeightType::Q8_0, WeightType::Q2_K,
                                 WeightType::Q3_K, WeightType::Q4_K, WeightType::Q5_K,
                                 WeightType::Q6_K};

// A matrix of three parts (Q8_0 rows, rows of the type under test, bf16 rows), as a
// Q4_K_M file's fused projections are, against the float64 product of the dequantised
// rows. The bound is what the backends round on the way, summed over the row: the CPU
// quantises x to 8 bits per block of 32 or 256 (|error| <= amax(block) / 254 per
// element), CUDA's prefill rounds x and the weights to f16 (2^-11 relative each).
TEST_P(Kernels, MatmulOverPartsOfEveryWeightType) {
  auto b = make_backend(GetParam(), "", 0);  // weights kept in their own types
  const int cols = 512;
  for (WeightType type : kEveryType) {
    SCOPED_TRACE(weight_type_name(type));
    const std::vector<WeightType> types = {WeightType::Q8_0, type, WeightType::BF16};
    const std::vector<int> rows = {3, 7, 2};
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<WeightRows> parts;
    std::vector<float> w;  // the whole matrix, dequantised
    for (size_t p = 0; p < types.size(); p++) {
      bytes.push_back(random_rows(types[p], rows[p], cols, 40 + uint32_t(p)));
      parts.push_back({bytes.back().data(), types[p], rows[p]});
      const std::vector<float> d = dequantized(types[p], bytes.back(), cols);
      w.insert(w.end(), d.begin(), d.end());
    }
    const int n_out = 12;
    WeightMatrix m = b->upload_weights(parts, cols, false);
    for (int T : {1, 5, 20}) {  // decode, a short prefill, a prefill rebuilding rows as f32
      const std::vector<float> x = random_vector(size_t(T) * cols, 7 + T);
      Buf bx(*b, x), out(*b, size_t(T) * n_out);
      b->matmul(out.ptr, bx.ptr, m, T);
      const std::vector<float> got = out.host();
      for (int t = 0; t < T; t++)
        for (int o = 0; o < n_out; o++) {
          // The activation block the CPU quantises x in for this row's type.
          const WeightType row_type = types[o < 3 ? 0 : o < 10 ? 1 : 2];
          const int block = row_type >= WeightType::Q2_K ? 256 : 32;
          double want = 0, bound = 0;
          for (int c0 = 0; c0 < cols; c0 += block) {
            float amax = 0;
            for (int c = c0; c < c0 + block; c++) amax = std::max(amax, std::fabs(x[t * cols + c]));
            for (int c = c0; c < c0 + block; c++) {
              const double wx = double(w[o * cols + c]) * x[t * cols + c];
              want += wx;
              bound += std::fabs(w[o * cols + c]) * amax / 254 + std::fabs(wx) * 0x1p-10;
            }
          }
          ASSERT_NEAR(got[t * n_out + o], want, bound + 1e-5)
              << "token " << t << ", row " << o << " (part " << (o < 3 ? 0 : o < 10 ? 1 : 2) << ")";
        }
    }
    b->release_matrix(m);
  }
}

// A token's row comes back as float32: exactly the dequantised row, on every backend.
TEST_P(Kernels, EmbeddingOfEveryWeightType) {
  auto b = make_backend(GetParam(), "", 0);
  const int vocab = 9, dim = 256;
  for (WeightType type : kEveryType) {
    SCOPED_TRACE(weight_type_name(type));
    const std::vector<uint8_t> bytes = random_rows(type, vocab, dim, 3);
    const std::vector<float> table = dequantized(type, bytes, dim);
    WeightMatrix m = b->upload_weights({{bytes.data(), type, vocab}}, dim, false);
    const std::vector<int32_t> ids = {8, 0, 3, 3};
    Buf out(*b, ids.size() * dim);
    b->embedding(out.ptr, m, ids.data(), int(ids.size()));
    const std::vector<float> got = out.host();
    for (size_t t = 0; t < ids.size(); t++)
      for (int i = 0; i < dim; i++)
        ASSERT_EQ(got[t * dim + i], table[size_t(ids[t]) * dim + i]) << "token " << t << ", " << i;
    b->release_matrix(m);
  }
}

TEST_P(Kernels, EmbeddingWithHalfWeights) {
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

TEST(Backends, WeightsKeepTheirTypeUnlessConvertedAndUnknownDevicesAreErrors) {
  EXPECT_THROW(make_backend("tpu", "", 1), std::invalid_argument);
  auto cpu = make_backend("cpu", "", 1);
  test::Matrix m(*cpu, std::vector<float>(6), 2, 3);
  EXPECT_EQ(m.m.parts.at(0).type, WeightType::F32);
  EXPECT_EQ(cpu->weight_type_for(WeightType::Q4_K), WeightType::Q4_K);
  auto cpu_bf16 = make_backend("cpu", "bf16", 1);
  EXPECT_EQ(cpu_bf16->weight_type_for(WeightType::Q4_K), WeightType::BF16);
  test::Matrix converted(*cpu_bf16, std::vector<float>(6), 2, 3);
  EXPECT_EQ(converted.m.parts.at(0).type, WeightType::BF16);
  if (cuda_gpu_count() == 0) {
    EXPECT_THROW(make_backend("cuda", "f16", 1), std::runtime_error);
  }
}

// cuBLAS is opened, not linked: every function kvlm calls must resolve in the toolkit's
// library (the check needs the library, not a GPU).
TEST(Backends, CublasOpensWithEveryFunctionTheBackendCalls) {
#if KVLM_CUDA
  EXPECT_EQ(cublas_library().rfind("libcublas.so.", 0), 0u) << cublas_library();
  EXPECT_NO_THROW(open_cublas_library());
#else
  GTEST_SKIP() << "this build has no CUDA backend";
#endif
}

TEST(Backends, DeviceFlagsResolveOnceToAChoice) {
  const DeviceChoice cpu = resolve_device("cpu", "");
  EXPECT_FALSE(cpu.weights) << "weights stay as the file stores them";
  EXPECT_EQ(planned_weight_type(cpu, WeightType::Q6_K), WeightType::Q6_K);
  EXPECT_EQ(planned_weight_type(cpu, WeightType::F32), WeightType::F32);
  const DeviceChoice cuda = resolve_device("cuda", "");
  EXPECT_EQ(cuda.device, Device::Cuda) << "a plan for cuda needs no GPU";
  EXPECT_EQ(planned_weight_type(cuda, WeightType::F32), WeightType::F16);
  EXPECT_EQ(planned_weight_type(cuda, WeightType::Q4_K), WeightType::Q4_K);
  EXPECT_EQ(resolve_device("cuda", "bf16").weights, DType::BF16);
  EXPECT_EQ(planned_weight_type(resolve_device("cpu", "f32"), WeightType::Q4_1), WeightType::F32);
  EXPECT_EQ(resolve_device("", "").device, cuda_gpu_count() > 0 ? Device::Cuda : Device::Cpu);
  EXPECT_THROW(resolve_device("cpu", "f8"), std::invalid_argument);
  EXPECT_THROW(resolve_device("tpu", ""), std::invalid_argument);
  EXPECT_EQ(resolve_device("cuda", "").kv, DType::F16);
  EXPECT_EQ(resolve_device("cpu", "").kv, DType::F16);
  EXPECT_EQ(resolve_device("cpu", "", "f32").kv, DType::F32);
  EXPECT_EQ(resolve_device("cuda", "", "bf16").kv, DType::BF16);
  try {
    resolve_device("cpu", "", "f8");
    ADD_FAILURE() << "--kv-dtype f8 accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "--kv-dtype f8: unknown (f32, f16 or bf16)");
  }
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
  b.rope_qk(q.ptr, bqkv.ptr, 1, bf.ptr, 1, 1, 1, 4, 4, false);
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
      for (auto [first, adjacent] : {std::pair{0, false}, {39998, false}, {5, true}}) {
        // positions past 40000 need the angle in double
        SCOPED_TRACE("head_dim " + std::to_string(head_dim) + ", rope_dim " +
                     std::to_string(rope_dim) + ", first position " + std::to_string(first) +
                     (adjacent ? ", adjacent pairs" : ", halves"));
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
              const int i0 = adjacent ? 2 * i : i, i1 = adjacent ? 2 * i + 1 : i + half;
              float x0 = v[i0], x1 = v[i1];
              v[i0] = float(x0 * std::cos(a) - x1 * std::sin(a));
              v[i1] = float(x0 * std::sin(a) + x1 * std::cos(a));
            }
          std::copy_n(&want_qkv[size_t(t) * row], q_dim, &want_q[size_t(t) * q_dim]);
          std::copy_n(&qkv[size_t(t) * row], q_dim, &want_qkv[size_t(t) * row]);  // read only
        }
        Buf bqkv(b, qkv), bf(b, inv_freq), q(b, want_q.size());
        b.rope_qk(q.ptr, bqkv.ptr, first, bf.ptr, T, n_heads, n_kv, head_dim, rope_dim, adjacent);
        std::vector<float> got_q = q.host();
        expect_close(got_q, want_q, 1e-5f, "queries");
        expect_close(bqkv.host(), want_qkv, 1e-5f, "keys (queries and values unchanged)");
        if (first == 0) {  // position 0 is the identity
          for (int i = 0; i < q_dim; i++) ASSERT_EQ(got_q[i], qkv[i]);
        }
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
      int kv = h / group, visible = std::max(0, lens[kv] - T + t + 1);  // 0: out stays 0
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
                                         {3, 6, 64, {700, 1200}},   // 3 new tokens, chunked
                                         {1, 32, 64, {31, 4097}},   // GQA group 16
                                         {1, 4, 128, {1, 31, 32, 33}},
                                         {31, 2, 128, {31, 32}},
                                         {33, 4, 128, {33, 4097}},  // continued prefill, long cache
                                         {64, 2, 64, {64, 65}},
                                         {1, 2, 12, {7, 70}},       // head dim not a multiple of 8
                                         {9, 2, 12, {9, 70}}}) {
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
// The larger case crosses the CPU's blocks of 32 query tokens and 64 keys, takes its rows
// in strips (several tasks then add into the same output rows), and has a head dimension
// that is no multiple of a vector.
TEST_P(Kernels, AttentionScoresAreTheSoftmaxRows) {
  Backend& b = *backend;
  struct Case {
    int T, n_heads, d;
    std::vector<int> lens;  // per KV head; ragged: older tokens before the T new ones
    std::vector<std::tuple<int, int, bool>> rows;  // first, count, average
  };
  const std::vector<Case> cases = {
      {6, 4, 16, {9, 6}, {{4, 2, true}, {0, 6, false}, {5, 1, false}}},
      {75, 6, 40, {75, 140, 200}, {{0, 75, false}, {3, 70, true}, {43, 32, false}, {74, 1, true}}},
  };
  for (const Case& c : cases) {
    const int group = c.n_heads / int(c.lens.size());
    std::vector<std::vector<float>> keys;
    std::vector<std::unique_ptr<Buf>> bufs;
    std::vector<KVHeadView> view;
    for (size_t h = 0; h < c.lens.size(); h++) {
      keys.push_back(random_vector(size_t(c.lens[h]) * c.d, 50 + h));
      bufs.push_back(std::make_unique<Buf>(b, keys.back()));
      view.push_back({bufs.back()->ptr, bufs.back()->ptr, c.lens[h]});
    }
    auto q = random_vector(size_t(c.T) * c.n_heads * c.d, 60, 2.0f);
    Buf bq(b, q);
    const int stride = *std::max_element(c.lens.begin(), c.lens.end());
    for (auto [first, rows, average] : c.rows) {
      Buf out(b, size_t(c.n_heads) * stride);
      b.attention_scores(out.ptr, stride, bq.ptr, view, c.T, first, rows, c.n_heads, c.d, average);
      std::vector<float> got = out.host();
      for (int h = 0; h < c.n_heads; h++) {
        const int kv = h / group, len = c.lens[kv];
        std::vector<double> want(len, 0.0);
        for (int t = first; t < first + rows; t++) {
          const int visible = len - c.T + t + 1;
          std::vector<double> p(visible);
          double mx = -1e300, sum = 0;
          for (int j = 0; j < visible; j++) {
            double s = 0;
            for (int i = 0; i < c.d; i++)
              s += double(q[(size_t(t) * c.n_heads + h) * c.d + i]) * keys[kv][size_t(j) * c.d + i];
            mx = std::max(mx, p[j] = s / std::sqrt(double(c.d)));
          }
          for (double& v : p) sum += v = std::exp(v - mx);
          for (int j = 0; j < visible; j++) want[j] += p[j] / sum / (average ? rows : 1);
        }
        for (int j = 0; j < len; j++)
          ASSERT_NEAR(got[size_t(h) * stride + j], want[j], 1e-5 * std::max(1.0, want[j]))
              << "T " << c.T << " rows [" << first << ", " << first + rows << ") head " << h
              << " slot " << j;
      }
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
    b.key_norms(out.ptr, KVHeadView{bk.ptr, bk.ptr, len}, d);
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
  const size_t row_bytes = cols * sizeof(float);
  auto src = random_vector(rows * 2 * cols, 40);
  Buf bs(b, src), dst(b, rows * cols);
  b.copy_rows(dst.ptr, row_bytes, bs.ptr + cols, 2 * row_bytes, rows, row_bytes);  // odd halves
  std::vector<float> got = dst.host();
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) EXPECT_EQ(got[r * cols + c], src[r * 2 * cols + cols + c]);

  std::vector<int32_t> keep = {0, 2, 3, 5};
  b.compact_rows(dst.ptr, keep.data(), int(keep.size()), row_bytes);
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
  b.compact_rows(buf.ptr, keep.data(), int(keep.size()), cols * sizeof(float));
  b.compact_rows(buf.ptr, keep.data(), 0, cols * sizeof(float));  // nothing kept: nothing moves
  std::vector<float> got = buf.host();
  for (size_t r = 0; r < keep.size(); r++)
    for (int c = 0; c < cols; c++)
      ASSERT_EQ(got[r * cols + c], data[size_t(keep[r]) * cols + c]) << "row " << r;
}

// ---- KV rows stored in 16 bits ----------------------------------------------------------

const DType kKVTypes[] = {DType::F32, DType::F16, DType::BF16};

// The values rows hold once stored in `dtype` (f32: themselves).
std::vector<float> stored(DType dtype, const std::vector<float>& v) {
  return dtype == DType::F32 ? v : rounded_to(dtype, v);
}

// One KV head's keys and values in `dtype` on the backend, written by append_kv.
struct KVRows {
  Buf keys, values;
  int len;
  DType dtype;
  KVRows(Backend& b, const std::vector<float>& k, const std::vector<float>& v, int d, DType t)
      : keys(b, (k.size() * dtype_bytes(t) + 3) / 4), values(b, keys.n), len(int(k.size()) / d),
        dtype(t) {
    Buf bk(b, k), bv(b, v);
    b.append_kv({{keys.ptr, values.ptr}}, t, bk.ptr, bv.ptr, d, d, len);
  }
  KVHeadView view() const { return {keys.ptr, values.ptr, len, dtype}; }
};

// newest_key_norms: the last key of every head (ragged lengths, every KV dtype) in one op,
// equal to key_norms' value for that row.
TEST_P(Kernels, NewestKeyNormsAreTheLastRowsNorms) {
  Backend& b = *backend;
  const int d = 80;
  const std::vector<int> lens = {1, 7, 33};
  for (DType t : kKVTypes) {
    std::vector<std::unique_ptr<KVRows>> heads;
    std::vector<KVHeadView> view;
    for (size_t h = 0; h < lens.size(); h++) {
      const auto k = random_vector(size_t(lens[h]) * d, 90 + int(h));
      heads.push_back(std::make_unique<KVRows>(b, k, k, d, t));
      view.push_back(heads.back()->view());
    }
    Buf newest(b, std::vector<float>(lens.size(), -7.0f));
    b.newest_key_norms(newest.ptr, view, d);
    const std::vector<float> got = newest.host();
    for (size_t h = 0; h < lens.size(); h++) {
      Buf all(b, size_t(lens[h]));
      b.key_norms(all.ptr, view[h], d);
      EXPECT_EQ(got[h], all.host().back()) << dtype_name(t) << " head " << h;
    }
  }
}

// The rows of a KVRows buffer as float32 (16-bit ones widened).
std::vector<float> widened(const Buf& rows, DType t, size_t n) {
  const std::vector<float> words = rows.host();
  if (t == DType::F32) return {words.begin(), words.begin() + n};
  std::vector<float> out(n);
  dequantize(t == DType::F16 ? gguf::TensorType::F16 : gguf::TensorType::BF16,
             reinterpret_cast<const uint8_t*>(words.data()), out.data(), n);
  return out;
}

// rotate_keys turns each stored key row by its shift, as rope_qk turns by a position: the
// reference rotates the stored (rounded) rows in double, and the result is rounded once
// more, so 16-bit rows agree within one rounding of the type. Shift 0 leaves a row's bytes
// as they were; large shifts need the angle in double, as rope_qk.
TEST_P(Kernels, RotateKeysTurnsEachRowByItsShift) {
  Backend& b = *backend;
  const int d = 64;
  const std::vector<int32_t> shifts = {0, -1, -1, -3, 5, 0, -39999};
  const int n = int(shifts.size());
  for (DType t : kKVTypes)
    for (int rope_dim : {d, d / 2})
      for (bool adjacent : {false, true}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + ", rope_dim " + std::to_string(rope_dim) +
                     (adjacent ? ", adjacent pairs" : ", halves"));
        const int half = rope_dim / 2;
        std::vector<float> inv_freq(half);
        for (int i = 0; i < half; i++) inv_freq[i] = std::pow(10000.0f, -2.0f * i / rope_dim);
        const auto keys = random_vector(size_t(n) * d, 95);
        KVRows rows(b, keys, keys, d, t);
        const std::vector<float> before = widened(rows.keys, t, keys.size());
        std::vector<float> want = before;
        for (int r = 0; r < n; r++)
          for (int i = 0; i < half; i++) {
            const double a = double(shifts[r]) * inv_freq[i];
            const int i0 = adjacent ? 2 * i : i, i1 = adjacent ? 2 * i + 1 : i + half;
            const double x0 = before[size_t(r) * d + i0], x1 = before[size_t(r) * d + i1];
            want[size_t(r) * d + i0] = float(x0 * std::cos(a) - x1 * std::sin(a));
            want[size_t(r) * d + i1] = float(x0 * std::sin(a) + x1 * std::cos(a));
          }
        Buf bf(b, inv_freq);
        b.rotate_keys(rows.keys.ptr, t, shifts.data(), n, d, bf.ptr, rope_dim, adjacent);
        const std::vector<float> got = widened(rows.keys, t, keys.size());
        const float unit = t == DType::F32 ? 1e-5f : t == DType::F16 ? 0x1p-10f : 0x1p-7f;
        expect_close(got, want, unit, "rotated rows");
        for (int r = 0; r < n; r++) {
          if (shifts[r] == 0) {
            for (int c = 0; c < d; c++) ASSERT_EQ(got[size_t(r) * d + c], before[size_t(r) * d + c]);
          }
        }
      }
}

// append_kv writes every head's rows, from a strided source, rounded to nearest even (the
// bytes equal ggml's conversion: an independent implementation).
TEST_P(Kernels, AppendKvRoundsEveryHeadInOneCall) {
  Backend& b = *backend;
  const int n_heads = 3, d = 80, T = 5, row_stride = n_heads * d + 16;  // padding is skipped
  const auto keys = random_vector(size_t(T) * row_stride, 42), values = random_vector(keys.size(), 43);
  Buf bk(b, keys), bv(b, values);
  for (DType t : kKVTypes) {
    const size_t floats = (size_t(T) * d * dtype_bytes(t) + 3) / 4;
    std::vector<std::unique_ptr<Buf>> dst;
    std::vector<KVAppendTarget> targets;
    for (int h = 0; h < n_heads; h++) {
      dst.push_back(std::make_unique<Buf>(b, floats));
      dst.push_back(std::make_unique<Buf>(b, floats));
      targets.push_back({dst[2 * h]->ptr, dst[2 * h + 1]->ptr});
    }
    b.append_kv(targets, t, bk.ptr, bv.ptr, row_stride, d, T);
    for (int h = 0; h < n_heads; h++)
      for (int side = 0; side < 2; side++) {
        const std::vector<float>& src = side ? values : keys;
        std::vector<float> head;
        for (int r = 0; r < T; r++)
          head.insert(head.end(), src.begin() + r * row_stride + h * d,
                      src.begin() + r * row_stride + (h + 1) * d);
        const std::vector<float> got_words = dst[2 * h + side]->host();
        std::vector<uint8_t> got(size_t(T) * d * dtype_bytes(t));
        std::memcpy(got.data(), got_words.data(), got.size());
        const std::vector<uint8_t> want =
            t == DType::F32 ? test::quantize(gguf::TensorType::F32, head)
                            : test::quantize(t == DType::F16 ? gguf::TensorType::F16
                                                             : gguf::TensorType::BF16, head);
        ASSERT_EQ(got, want) << dtype_name(t) << " head " << h << (side ? " values" : " keys");
      }
  }
}

// Attention over 16-bit rows. Against the reference over the same rounded rows the
// tolerance is float32's (1e-4, as above): the kernels widen exactly and only sum
// differently. Against the float32 rows it is the rounding of the stored rows: a value
// moves by up to 2^-11 (f16) or 2^-8 (bf16) of itself, so the output (a weighted mean of
// values) by about that much, and each score q.k by |q||k| times that; with these |q|, |k|
// the outputs stay within 4x the unit roundoff (relative, plus the same absolute).
// A CPU with bf16 pair products runs prefill's P.V in them (kernels/cpu/attention.cpp):
// each probability and value rounded to 2^-9 of itself moves the weighted mean by at most
// 2^-8 of the largest |value|, which both bounds add.
TEST_P(Kernels, AttentionOverHalfPrecisionCache) {
  Backend& b = *backend;
  const auto* cpu = dynamic_cast<const CpuBackend*>(&b);
  struct Case { int T, n_heads, d; std::vector<int> lens; };
  for (DType t : {DType::F16, DType::BF16})
    for (const Case& c : std::vector<Case>{{1, 9, 64, {31, 32, 33}},
                                           {1, 8, 128, {4097, 33}},
                                           {17, 2, 80, {20, 17}},
                                           {33, 4, 128, {33, 300}}}) {
      const int n_kv = int(c.lens.size());
      std::vector<std::vector<float>> keys, values, keys16, values16;
      std::vector<std::unique_ptr<KVRows>> rows;
      std::vector<KVHeadView> view;
      for (int h = 0; h < n_kv; h++) {
        keys.push_back(random_vector(size_t(c.lens[h]) * c.d, 10 + h));
        values.push_back(random_vector(size_t(c.lens[h]) * c.d, 20 + h));
        keys16.push_back(stored(t, keys.back()));
        values16.push_back(stored(t, values.back()));
        rows.push_back(std::make_unique<KVRows>(b, keys.back(), values.back(), c.d, t));
        view.push_back(rows.back()->view());
      }
      auto q = random_vector(size_t(c.T) * c.n_heads * c.d, 30, 0.5f);
      Buf bq(b, q), out(b, q.size());
      b.attention(out.ptr, bq.ptr, view, c.T, c.n_heads, c.d);
      const std::string what = std::string("attention ") + dtype_name(t) + " T=" + std::to_string(c.T);
      // These cases' prefills (T > 1) have 8 or more query rows a task: strips, not rows.
      const float pairs = cpu && cpu->bf16_prefill() && c.T > 1 ? 0x1p-8f : 0.0f;
      expect_close(out.host(), naive_attention(q, keys16, values16, c.lens, c.T, c.n_heads, c.d),
                   1e-4f + pairs, what + " (rounded rows)");
      const float unit = t == DType::F16 ? 0x1p-11f : 0x1p-8f;
      expect_close(out.host(), naive_attention(q, keys, values, c.lens, c.T, c.n_heads, c.d),
                   4 * unit + pairs, what + " (float32 rows)");
    }
}

// attention_scores and key_norms read 16-bit keys as attention does: exact against the
// rounded keys (float32 tolerances), and within the keys' rounding of the float32 result.
TEST_P(Kernels, ObservationsOverHalfPrecisionKeys) {
  Backend& b = *backend;
  const int T = 6, n_heads = 4, d = 64, len = 40;
  const auto k = random_vector(size_t(len) * d, 51), q = random_vector(size_t(T) * n_heads * d, 61, 0.5f);
  Buf bq(b, q);
  std::vector<float> reference_scores, reference_norms;
  for (DType t : kKVTypes) {
    const std::vector<float> k16 = stored(t, k);
    KVRows rows(b, k, k, d, t);
    Buf scores(b, size_t(n_heads) * len), norms(b, len);
    b.attention_scores(scores.ptr, len, bq.ptr, {rows.view()}, T, 0, T, n_heads, d, true);
    b.key_norms(norms.ptr, rows.view(), d);
    const std::vector<float> got_scores = scores.host(), got_norms = norms.host();
    for (int j = 0; j < len; j++) {
      double s = 0;
      for (int i = 0; i < d; i++) s += double(k16[j * d + i]) * k16[j * d + i];
      ASSERT_NEAR(got_norms[j], std::sqrt(s), 1e-5 * std::sqrt(s)) << dtype_name(t) << " key " << j;
    }
    if (t == DType::F32) {
      reference_scores = got_scores, reference_norms = got_norms;
      continue;
    }
    const float unit = t == DType::F16 ? 0x1p-11f : 0x1p-8f;
    expect_close(got_norms, reference_norms, 2 * unit, std::string("key_norms ") + dtype_name(t));
    // A probability p moves by about p times the change of its score (|q||k| x unit).
    for (size_t i = 0; i < got_scores.size(); i++)
      ASSERT_NEAR(got_scores[i], reference_scores[i], 16 * unit * (reference_scores[i] + 1e-3f))
          << dtype_name(t) << " score " << i;
  }
}

// ---- edge cases both backends treat alike -------------------------------------------------

// A query row that sees no keys, whole heads emptied by a KV method, gets 0 (backend.h),
// on the decode and the prefill path, while the other heads attend as usual.
TEST_P(Kernels, EmptyHeadAttendsToZero) {
  Backend& b = *backend;
  const int d = 64;
  for (int T : {1, 3}) {
    const int n_heads = 4, full_len = 5 + T;
    const auto k = random_vector(size_t(full_len) * d, 7), v = random_vector(k.size(), 8);
    Buf bk(b, k), bv(b, v), empty(b, 1);
    const std::vector<KVHeadView> view = {{empty.ptr, empty.ptr, 0}, {bk.ptr, bv.ptr, full_len}};
    const auto q = random_vector(size_t(T) * n_heads * d, 9);
    Buf bq(b, q), out(b, std::vector<float>(q.size(), -7.0f));
    b.attention(out.ptr, bq.ptr, view, T, n_heads, d);
    const std::vector<float> got = out.host();
    const std::vector<float> want =
        naive_attention(q, {{}, k}, {{}, v}, {0, full_len}, T, n_heads, d);
    for (int t = 0; t < T; t++)
      for (int h = 0; h < n_heads; h++)
        for (int i = 0; i < d; i++) {
          const size_t at = (size_t(t) * n_heads + h) * d + i;
          if (h < 2) {
            ASSERT_EQ(got[at], 0.0f) << "T=" << T << " empty head " << h;
          } else {
            ASSERT_NEAR(got[at], want[at], 1e-4f * (1 + std::fabs(want[at])));
          }
        }
  }
}

// No rows asked for: every live slot scores 0 (slots past a head's length are not rows).
TEST_P(Kernels, AttentionScoresOfNoRowsAreZero) {
  Backend& b = *backend;
  const int d = 16, stride = 8;
  const auto k = random_vector(size_t(stride) * d, 3);
  Buf bk(b, k), q(b, random_vector(size_t(2) * 2 * d, 4));
  Buf out(b, std::vector<float>(size_t(2) * stride, -7.0f));
  b.attention_scores(out.ptr, stride, q.ptr, {{bk.ptr, bk.ptr, stride}}, 2, 1, 0, 2, d, true);
  for (float x : out.host()) ASSERT_EQ(x, 0.0f);
}

// Calls a device kernel could not survive are refused on the host, by the same checks
// on every backend, with the op and the values in the message.
TEST_P(Kernels, ViewOpsRejectInvalidShapes) {
  Backend& b = *backend;
  const int d = 8;
  Buf k(b, random_vector(size_t(4) * d, 1)), q(b, random_vector(size_t(6) * d, 2)), out(b, 64);
  const KVHeadView head{k.ptr, k.ptr, 4};
  auto expect_invalid = [](auto&& call, const std::string& words) {
    try {
      call();
      ADD_FAILURE() << "no exception; expected one naming: " << words;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  expect_invalid([&] { b.newest_key_norms(out.ptr, {head, KVHeadView{k.ptr, k.ptr, 0}}, d); },
                 "newest_key_norms: KV head 1 is empty");
  expect_invalid([&] { b.attention(out.ptr, q.ptr, {head, head}, 1, 3, d); },
                 "attention: 3 query heads are not a multiple of 2 KV heads");
  expect_invalid([&] { b.attention(out.ptr, q.ptr, {}, 1, 2, d); }, "attention: no KV heads");
  expect_invalid([&] { b.attention(out.ptr, q.ptr, {head}, 1, 2, 0); }, "attention: head dim 0");
  KVHeadView half = head;
  half.dtype = DType::F16;
  expect_invalid([&] { b.attention(out.ptr, q.ptr, {head, half}, 1, 2, d); },
                 "attention: KV heads stored in both f32 and f16");
  expect_invalid([&] { b.attention_scores(out.ptr, 4, q.ptr, {head}, 1, 0, 1, 0, d, false); },
                 "attention_scores: 0 query heads are not a multiple of 1 KV heads");
  expect_invalid([&] { b.attention_scores(out.ptr, 3, q.ptr, {head}, 1, 0, 1, 2, d, false); },
                 "attention_scores: stride 3 is shorter than a KV head of 4 slots");
  expect_invalid([&] { b.attention_scores(out.ptr, 4, q.ptr, {head}, 2, 1, 2, 2, d, false); },
                 "attention_scores: rows [1, 3) are not within the 2 new tokens");
}

// Rows of 16-bit values whose size is not a multiple of 4 bytes (head_dim 3) move whole.
TEST_P(Kernels, CopyAndCompactRowsOfAnyByteSize) {
  Backend& b = *backend;
  const size_t row_bytes = 6;
  const int rows = 5;
  std::vector<uint8_t> bytes(rows * row_bytes + 2);
  for (size_t i = 0; i < bytes.size(); i++) bytes[i] = uint8_t(17 * i + 3);
  std::vector<float> words(bytes.size() / 4);
  std::memcpy(words.data(), bytes.data(), bytes.size());
  Buf src(b, words), dst(b, words.size());
  b.copy_rows(dst.ptr, row_bytes, src.ptr, row_bytes, rows, row_bytes);
  const std::vector<int32_t> keep = {1, 3, 4};
  b.compact_rows(dst.ptr, keep.data(), int(keep.size()), row_bytes);
  const std::vector<float> got_words = dst.host();
  std::vector<uint8_t> got(bytes.size());
  std::memcpy(got.data(), got_words.data(), got.size());
  for (size_t r = 0; r < keep.size(); r++)
    for (size_t c = 0; c < row_bytes; c++)
      ASSERT_EQ(got[r * row_bytes + c], bytes[keep[r] * row_bytes + c]) << "row " << r;
}

// The vectorised exp the CPU attention uses, against the C library's: a sweep, and the
// points halfway between multiples of ln 2, where the rounding of x / ln 2 changes.
TEST(Simd, ExpMatchesLibm) {
  std::vector<float> xs;
  for (float x = -100.0f; x < 88.3f; x += 0.37f) xs.push_back(x);  // softmax only needs x <= 0
  for (int k = -126; k <= 126; k++)
    for (float nudge : {-1e-4f, 0.0f, 1e-4f}) xs.push_back(float((k + 0.5) * std::log(2.0)) + nudge);
  for (float x : xs) {
    simd::Vec v = simd::exp(simd::broadcast(x));
    float want = std::exp(x);
    if (x < -87.3f) {
      EXPECT_LT(v[0], 1e-37f) << "x = " << x;
    } else {
      EXPECT_NEAR(v[0], want, 3e-7f * want) << "x = " << x;
    }
  }
}

// The 16-lane exp (attention's exponentials) computes each lane as the 8-lane one does, and
// a horizontal sum adds every lane once, whatever the width.
TEST(Simd, WideVectorsComputeLaneByLaneAsNarrowOnes) {
  std::vector<float> xs(64);
  for (size_t i = 0; i < xs.size(); i++) xs[i] = -80.0f + 1.37f * float(i);
  for (size_t i = 0; i < xs.size(); i += simd::kWideLanes) {
    const simd::WideVec wide = simd::exp(simd::load<simd::WideVec>(&xs[i]));
    for (int half = 0; half < 2; half++) {
      const simd::Vec narrow = simd::exp(simd::load(&xs[i + half * simd::kLanes]));
      for (int k = 0; k < simd::kLanes; k++)
        ASSERT_EQ(wide[half * simd::kLanes + k], narrow[k]) << "x = " << xs[i + half * simd::kLanes + k];
    }
  }
  simd::WideVec powers{};
  for (int k = 0; k < simd::kWideLanes; k++) powers[k] = float(1 << k);
  EXPECT_EQ(simd::horizontal_sum(powers), float((1 << simd::kWideLanes) - 1));
  EXPECT_EQ(simd::horizontal_sum(simd::broadcast(0.5f)), 0.5f * simd::kLanes);
}

// --- prefill's products in bf16 pairs (kernels/cpu/strips.h) ---

// The shapes: weight rows not a multiple of the 32-column panel, nor of 8 (the wide
// interleave's tile); k odd, below and above the 16 of a tile; token rows not a multiple of
// the 6-row strip.
struct PairCase {
  int rows, columns, n_k;
};
constexpr PairCase kPairCases[] = {{1, 1, 1},   {5, 7, 15},   {6, 32, 16},  {13, 45, 33},
                                   {6, 64, 576}, {20, 70, 130}, {7, 96, 1536}};

std::vector<strips::BFloat16> rounded_rows(const std::vector<float>& x, int rows, int n) {
  const int stride = (n + 1) / 2 * 2;
  // Whole strips of 6 rows are read; the rows past `rows` only need to be readable.
  std::vector<strips::BFloat16> out(size_t(rows + strips::kStripRows) * stride, {0});
  strips::round_rows(x.data(), rows, n, n, out.data(), stride);
  return out;
}

// Pair panels of w (n rows of n_k: B's columns), built from w as it is, or from its
// transpose (n_k rows of n: B's rows, as attention's values are).
std::vector<strips::BFloat16> pair_panels(const std::vector<float>& w, int n, int n_k, bool hardware,
                                          bool from_k_rows = false) {
  const int panels = (n + strips::kPairPanelColumns - 1) / strips::kPairPanelColumns;
  std::vector<strips::BFloat16> out(size_t(panels) * strips::kPairPanelColumns * ((n_k + 1) / 2) * 2,
                                    {0x7fc0});  // NaN: every value must be written
  if (!from_k_rows) {
    strips::pair_panels_from_columns(w.data(), n, n_k, n_k, out.data(), hardware);
    return out;
  }
  std::vector<float> k_rows(w.size());
  for (int j = 0; j < n; j++)
    for (int k = 0; k < n_k; k++) k_rows[size_t(k) * n + j] = w[size_t(j) * n_k + k];
  strips::pair_panels_from_k_rows(k_rows.data(), n_k, n, n, out.data(), hardware);
  return out;
}

// Rounding matches ggml's (an independent round-to-nearest-even), the panels hold each
// rounded weight where the layout says (built from B's columns or from its rows), and the
// scalar product is the float64 sum of the rounded values' products to float32's
// precision, added to what C held when accumulating.
TEST(Strips, Bf16PairsRoundLayOutAndMultiply) {
  for (const PairCase& c : kPairCases) {
    SCOPED_TRACE(std::to_string(c.rows) + " x " + std::to_string(c.columns) + ", k " + std::to_string(c.n_k));
    const std::vector<float> x = random_vector(size_t(c.rows) * c.n_k, 21),
                             w = random_vector(size_t(c.columns) * c.n_k, 22);
    const std::vector<float> x16 = rounded_to(DType::BF16, x), w16 = rounded_to(DType::BF16, w);
    const int stride = (c.n_k + 1) / 2 * 2, n_pairs = stride / 2;
    const auto a = rounded_rows(x, c.rows, c.n_k);
    for (int r = 0; r < c.rows; r++) {
      for (int k = 0; k < c.n_k; k++)
        ASSERT_EQ(simd::to_float(a[size_t(r) * stride + k]), x16[size_t(r) * c.n_k + k]) << r << ", " << k;
      if (c.n_k % 2) {
        ASSERT_EQ(a[size_t(r) * stride + c.n_k].bits, 0);
      }
    }
    const auto b = pair_panels(w, c.columns, c.n_k, false);
    for (size_t i = 0; i < b.size(); i++) {
      const size_t panel = i / (strips::kPairPanelColumns * 2 * n_pairs), q = i / 64 % n_pairs;
      const int column = int(panel) * strips::kPairPanelColumns + int(i % 64) / 2, k = 2 * int(q) + int(i % 2);
      const float want = column < c.columns && k < c.n_k ? w16[size_t(column) * c.n_k + k] : 0.0f;
      ASSERT_EQ(simd::to_float(b[i]), want) << "panel value " << i;
    }
    const auto b_from_rows = pair_panels(w, c.columns, c.n_k, false, true);
    for (size_t i = 0; i < b.size(); i++)
      ASSERT_EQ(b_from_rows[i].bits, b[i].bits) << "panel value " << i << " built from B's rows";
    const std::vector<float> before = random_vector(size_t(c.rows) * c.columns, 23);
    for (bool accumulate : {false, true}) {
      std::vector<float> got = before;
      strips::multiply_pairs(got.data(), c.columns, c.rows, c.columns, a.data(), stride, b.data(),
                             strips::kPairPanelColumns * stride, n_pairs, accumulate, false);
      for (int r = 0; r < c.rows; r++)
        for (int j = 0; j < c.columns; j++) {
          double want = accumulate ? before[size_t(r) * c.columns + j] : 0.0, magnitude = std::fabs(want);
          for (int k = 0; k < c.n_k; k++) {
            want += double(x16[size_t(r) * c.n_k + k]) * w16[size_t(j) * c.n_k + k];
            magnitude += std::fabs(double(x16[size_t(r) * c.n_k + k]) * w16[size_t(j) * c.n_k + k]);
          }
          ASSERT_NEAR(got[size_t(r) * c.columns + j], want, 1e-6 * magnitude)
              << r << ", " << j << (accumulate ? ", accumulating" : "");
        }
    }
  }
}

// The AVX512-BF16 versions against the scalar ones: the same panel bits (from B's columns
// and from its rows), the same sums up to float32's rounding.
TEST(Strips, Bf16PairsInHardwareMatchTheScalarVersion) {
  if (!strips::cpu_has_bf16_products())
    GTEST_SKIP() << "this CPU has no AVX512-BF16: the hardware bf16 products are not run";
  for (const PairCase& c : kPairCases) {
    SCOPED_TRACE(std::to_string(c.rows) + " x " + std::to_string(c.columns) + ", k " + std::to_string(c.n_k));
    const std::vector<float> x = random_vector(size_t(c.rows) * c.n_k, 31),
                             w = random_vector(size_t(c.columns) * c.n_k, 32);
    const auto scalar_b = pair_panels(w, c.columns, c.n_k, false);
    for (bool from_k_rows : {false, true}) {
      const auto b = pair_panels(w, c.columns, c.n_k, true, from_k_rows);
      ASSERT_EQ(b.size(), scalar_b.size());
      for (size_t i = 0; i < b.size(); i++)
        ASSERT_EQ(b[i].bits, scalar_b[i].bits) << "panel value " << i << (from_k_rows ? " from B's rows" : "");
    }
    const auto a = rounded_rows(x, c.rows, c.n_k);
    const int stride = (c.n_k + 1) / 2 * 2;
    for (bool accumulate : {false, true}) {
      std::vector<float> got = random_vector(size_t(c.rows) * c.columns, 33), want = got;
      for (bool hardware : {true, false})
        strips::multiply_pairs((hardware ? got : want).data(), c.columns, c.rows, c.columns, a.data(),
                               stride, scalar_b.data(), strips::kPairPanelColumns * stride, stride / 2,
                               accumulate, hardware);
      expect_close(got, want, 1e-5f, accumulate ? "bf16 pair products, accumulating" : "bf16 pair products");
    }
  }
}

// --- prefill's float32 products (kernels/cpu/strips.h) ---

// Panels of 16 weight rows (matmul's layout) and one 64-wide block of keys (attention's
// K^T): rows below, at and past one and two strips (6, 12), columns below, at and past one
// and two panels (16, 32); the AVX-512 tiles give the portable tiles' sums exactly, and both
// the float64 sums to float32's precision.
TEST(Strips, Float32ProductsInEveryTileShape) {
  struct Case {
    int rows, columns, n_k, width;
  };
  constexpr Case kCases[] = {{1, 1, 1, 16},     {5, 7, 15, 16},   {6, 16, 16, 16},
                             {13, 45, 33, 16},  {12, 32, 576, 16}, {25, 70, 130, 16},
                             {20, 64, 64, 64},  {7, 50, 64, 64},  {13, 17, 3, 64}};
  for (const Case& c : kCases) {
    SCOPED_TRACE(std::to_string(c.rows) + " x " + std::to_string(c.columns) + ", k " +
                 std::to_string(c.n_k) + ", panels in blocks of " + std::to_string(c.width));
    const int strips_rows = (c.rows + strips::kStripRows - 1) / strips::kStripRows * strips::kStripRows;
    const std::vector<float> x = random_vector(size_t(strips_rows) * c.n_k, 41),
                             w = random_vector(size_t(c.columns) * c.n_k, 42);
    const int blocks = (c.columns + c.width - 1) / c.width;
    std::vector<float> panels(size_t(blocks) * c.width * c.n_k);
    strips::interleave(w.data(), c.columns, c.n_k, c.n_k, c.width, panels.data());
    // A block of 16 is one panel; a block of 64 holds four, side by side along each k.
    const int panel_stride = c.width == strips::kPanelColumns ? strips::kPanelColumns * c.n_k
                                                              : strips::kPanelColumns;
    const std::vector<float> before = random_vector(size_t(c.rows) * c.columns, 43);
    for (bool accumulate : {false, true}) {
      std::vector<float> wide = before, portable = before;
      for (bool avx512 : {true, false})
        strips::multiply((avx512 ? wide : portable).data(), c.columns, c.rows, c.columns, x.data(),
                         c.n_k, panels.data(), panel_stride, c.width, c.n_k, accumulate, avx512);
      for (int r = 0; r < c.rows; r++)
        for (int j = 0; j < c.columns; j++) {
          const size_t at = size_t(r) * c.columns + j;
          double want = accumulate ? before[at] : 0.0, magnitude = std::fabs(want);
          for (int k = 0; k < c.n_k; k++) {
            const double product = double(x[size_t(r) * c.n_k + k]) * w[size_t(j) * c.n_k + k];
            want += product;
            magnitude += std::fabs(product);
          }
          ASSERT_EQ(wide[at], portable[at]) << r << ", " << j << (accumulate ? ", accumulating" : "");
          ASSERT_NEAR(wide[at], want, 1e-6 * magnitude) << r << ", " << j << (accumulate ? ", accumulating" : "");
        }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(, Kernels, ::testing::Values("cpu", "cuda"), test::backend_param_name);

}  // namespace
}  // namespace kvlm
