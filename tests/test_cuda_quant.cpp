// The CUDA weight-type kernels (kernels/cuda/quant.h) against the golden dequantisation of
// the gguf package (tests/data/quant, tests/golden/make_quant_golden.py), which is what the
// CPU reference kvlm::quant::dequantize_row reproduces bit for bit:
//   - dequantize() gives the golden values rounded once to half and to bfloat16;
//   - matvec() rebuilds every golden weight exactly in float32 (read back through one-hot
//     inputs), and multiplies matrices tiled from golden blocks within the float32
//     summation bound of a float64 reference, on shapes that leave warps and lanes idle.
// Skipped without a GPU; `make test-gpu` makes a missing GPU a failure. The readers these
// kernels are written over also run on the CPU, in tests/test_cuda_readers.cpp.
#include <gtest/gtest.h>

#ifdef KVLM_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend_fixture.h"
#include "quant_golden.h"
#include "kernels/cuda/quant.h"
#include "model/dequant.h"
#include "weight_type.h"

namespace kvlm {
namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// Device memory for one test (cudaMalloc: 256-byte aligned), freed on the way out.
class DeviceBytes {
 public:
  explicit DeviceBytes(size_t bytes) : bytes_(bytes) {
    cuda_ok(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)), "cudaMalloc");
  }
  template <class T>
  explicit DeviceBytes(const std::vector<T>& host) : DeviceBytes(host.size() * sizeof(T)) {
    upload(host);
  }
  ~DeviceBytes() { cudaFree(ptr_); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  template <class T>
  void upload(const std::vector<T>& host) {
    cuda_ok(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            "upload");
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> host(bytes_ / sizeof(T));
    cuda_ok(cudaMemcpy(host.data(), ptr_, host.size() * sizeof(T), cudaMemcpyDeviceToHost),
            "download");
    return host;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// A stream of its own, so the kernels are seen to queue on the stream they are given. A
// blocking one: it waits for DeviceBytes' copies and memsets, which run on the default
// stream and may still be under way when cudaMemcpy from pageable memory returns.
class Stream {
 public:
  Stream() { cuda_ok(cudaStreamCreate(&s_), "cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  void* handle() const { return s_; }
  void wait() const { cuda_ok(cudaStreamSynchronize(s_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t s_ = nullptr;
};

class CudaQuant : public ::testing::TestWithParam<TypeCase> {
 protected:
  void SetUp() override { KVLM_REQUIRE_CUDA(); }
};


// Every golden weight as float32 (bit for bit), and as half and bfloat16, each the float32
// value rounded once. A second call rebuilds all blocks but the last, which must stay as it
// was (all bits set).
TEST_P(CudaQuant, DequantizeRebuildsGoldenWeights) {
  const Golden g(GetParam());
  const int64_t n = int64_t(g.weights.size()), n_short = n - g.block_weights;
  const DeviceBytes blocks(g.blocks);
  Stream stream;
  for (const DType out_dtype : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(out_dtype));
    const size_t width = dtype_bytes(out_dtype);
    const uint32_t untouched = width == 4 ? 0xffffffffu : 0xffffu;
    std::vector<uint32_t> expected(n);
    for (int64_t i = 0; i < n; i++) {
      const float w = g.weights[i];
      expected[i] = out_dtype == DType::F32  ? std::bit_cast<uint32_t>(w)
                    : out_dtype == DType::F16 ? f32_to_f16(w)
                                              : f32_to_bf16(w);
    }
    // The value of element i of a downloaded buffer of `width`-byte elements.
    auto element = [&](const std::vector<uint8_t>& bytes, int64_t i) {
      uint32_t v = 0;
      std::memcpy(&v, &bytes[size_t(i) * width], width);
      return v;
    };

    DeviceBytes out(n * width);
    for (const int64_t count : {n, n_short}) {
      SCOPED_TRACE("weights rebuilt: " + std::to_string(count) + " of " + std::to_string(n));
      cuda_ok(cudaMemset(out.as<void>(), 0xff, n * width), "cudaMemset");
      cuda_quant::dequantize(GetParam().type, blocks.as<void>(), count, out.as<void>(), out_dtype,
                             stream.handle());
      stream.wait();
      const std::vector<uint8_t> got = out.download<uint8_t>();
      for (int64_t i = 0; i < n; i++) {
        ASSERT_EQ(element(got, i), i < count ? expected[i] : untouched)
            << "weight " << i << " (block " << i / g.block_weights << "), golden " << g.weights[i];
      }
    }
  }
}

// matvec's float32 weights are the golden ones, bit for bit. Row r of the matrix is golden
// block r (blocks of 1 weight: 8 of them, so the float rows take their 16-byte path), and
// x = e_c picks column c: every other product is an exact zero, so y[r] = W[r][c] exactly
// (a -0 weight reads +0, which == does not tell apart).
TEST_P(CudaQuant, MatvecRebuildsGoldenWeightsExactly) {
  const Golden g(GetParam());
  const Tiled m = tile(g, g.n_blocks(), std::max(1, 8 / g.block_weights), [](int r) { return r; });
  const DeviceBytes w(m.bytes);
  DeviceBytes x(m.cols * sizeof(float)), y(m.rows * sizeof(float));
  Stream stream;
  for (int c = 0; c < m.cols; c++) {
    std::vector<float> one_hot(m.cols, 0.0f);
    one_hot[c] = 1.0f;
    x.upload(one_hot);
    cuda_quant::matvec(GetParam().type, w.as<void>(), m.rows, m.cols, x.as<float>(), y.as<float>(),
                       stream.handle());
    stream.wait();
    const std::vector<float> got = y.download<float>();
    for (int r = 0; r < m.rows; r++) {
      ASSERT_EQ(got[r], m.weights[size_t(r) * m.cols + c]) << "row " << r << ", column " << c;
    }
  }
}

// Matrices tiled from golden blocks times a random x, against a float64 reference on the
// golden weights (quant_golden.h: the shapes, and the bound).
TEST_P(CudaQuant, MatvecMatchesFloat64Reference) {
  const Golden g(GetParam());
  Stream stream;
  for (const Tiled& m : matvec_matrices(g)) {
    SCOPED_TRACE(std::to_string(m.rows) + " x " + std::to_string(m.cols));
    const std::vector<float> x_host = matvec_input(m);
    const DeviceBytes w(m.bytes), x(x_host);
    DeviceBytes y(m.rows * sizeof(float));
    cuda_quant::matvec(GetParam().type, w.as<void>(), m.rows, m.cols, x.as<float>(), y.as<float>(),
                       stream.handle());
    stream.wait();
    const std::vector<float> got = y.download<float>();
    for (int r = 0; r < m.rows; r++) {
      const RowReference ref = row_reference(m, x_host, r);
      EXPECT_NEAR(got[r], ref.exact, ref.bound) << "row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(, CudaQuant, ::testing::ValuesIn(kTypes), type_param_name);

// Checked before anything reaches the GPU, so this runs without one (the pointers are never
// read).
TEST(CudaQuantArguments, RejectsPartialBlocksAndMisalignedVectors) {
  alignas(16) static float buffer[64];
  void* w = buffer;
  float* x = buffer;
  EXPECT_THROW(cuda_quant::matvec(WeightType::Q4_K, w, 1, 128, x, x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::matvec(WeightType::Q8_0, w, 1, 40, x, x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::matvec(WeightType::Q4_0, w, -1, 32, x, x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::matvec(WeightType::Q4_0, w, 1, 32, x + 1, x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::matvec(WeightType::Q4_1, reinterpret_cast<uint8_t*>(buffer) + 2, 1, 32,
                                  x, x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::dequantize(WeightType::Q6_K, w, 255, x, DType::F16, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::dequantize(WeightType::Q5_0, w, 32, x + 2, DType::BF16, nullptr),
               std::invalid_argument);
  EXPECT_THROW(cuda_quant::dequantize(WeightType::F16, w, -1, x, DType::BF16, nullptr),
               std::invalid_argument);
  // Nothing to do is no error, and launches nothing.
  EXPECT_NO_THROW(cuda_quant::matvec(WeightType::Q2_K, w, 0, 256, x, x, nullptr));
  EXPECT_NO_THROW(cuda_quant::dequantize(WeightType::Q3_K, w, 0, x, DType::F16, nullptr));
}

}  // namespace
}  // namespace kvlm
#endif  // KVLM_CUDA
