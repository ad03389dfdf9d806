// The CUDA readers (kernels/cuda/quant_readers.cuh) run on the CPU: every weight type's
// bit fields, scales and minimums rebuilt by the same source the GPU kernels compile,
// against the golden weights of the gguf package, bit for bit; and the matvec kernel's
// lanes, each summing its share of a row, added up as its warp adds them. CUDA's
// intrinsics get host versions below that do what CUDA's documentation says they do. This
// runs without a GPU; what it cannot see (launches, thread blocks, the shuffles, device
// memory) is tests/test_cuda_quant.cpp's.
#include <gtest/gtest.h>

#ifdef KVLM_CUDA
#include <algorithm>
#include <bit>
#include <cstdint>
#include <string>
#include <vector>

#include "quant_golden.h"

// ---- host versions of the CUDA intrinsics the readers call ---------------------------

template <class T>
T __ldg(const T* p) {  // a load through the read-only cache: a load
  return *p;
}
inline float __uint_as_float(uint32_t bits) { return std::bit_cast<float>(bits); }
// One rounding each, never fused into a multiply-add: not inlined, so the compiler cannot
// contract a product and a sum across them whatever the target.
[[gnu::noinline]] float __fmul_rn(float a, float b) { return a * b; }
[[gnu::noinline]] float __fadd_rn(float a, float b) { return a + b; }
[[gnu::noinline]] float __fsub_rn(float a, float b) { return a - b; }
// Byte n of the result is byte s[4n + 2 .. 4n] of the 8 bytes y:x (x's bytes are 0-3).
inline uint32_t __byte_perm(uint32_t x, uint32_t y, uint32_t s) {
  const uint64_t bytes = uint64_t(y) << 32 | x;
  uint32_t out = 0;
  for (int n = 0; n < 4; n++) out |= uint32_t(bytes >> (8 * (s >> (4 * n) & 7)) & 0xff) << (8 * n);
  return out;
}

#include "kernels/cuda/quant_readers.cuh"  // after the intrinsics it calls

namespace kvlm {
namespace {

// Every chunk of every golden block, through the reader the kernels use for the type: as
// matvec reads blocks (and dequantize any run of them) for the block types, and both ways
// for the float types (8 at a time, and 1 for rows that do not allow 16-byte loads).
// Compared as bits: -0 and +0 must come out as the reference has them too.
class CudaReadersOnHost : public ::testing::TestWithParam<TypeCase> {};

TEST_P(CudaReadersOnHost, RebuildGoldenWeightsBitForBit) {
  const Golden g(GetParam());
  for (const bool wide : {true, false}) {
    if (!wide && is_quantized(GetParam().type)) continue;  // block types are always wide
    SCOPED_TRACE(wide ? "8 weights at a time" : "1 weight at a time");
    int checked = 0;
    cuda_quant::with_reader(GetParam().type, wide, [&](auto tag) {
      using Reader = typename decltype(tag)::type;
      const int64_t n_blocks = int64_t(g.weights.size()) / Reader::kBlockWeights;
      for (int64_t b = 0; b < n_blocks; b++)
        for (int first = 0; first < Reader::kBlockWeights; first += Reader::kWidth) {
          float w[Reader::kWidth];
          Reader::load(g.blocks.data(), b, first, w);
          for (int k = 0; k < Reader::kWidth; k++, checked++) {
            const int64_t i = b * Reader::kBlockWeights + first + k;
            ASSERT_EQ(std::bit_cast<uint32_t>(w[k]), std::bit_cast<uint32_t>(g.weights[i]))
                << "weight " << i << ": " << w[k] << ", golden " << g.weights[i];
          }
        }
    });
    EXPECT_EQ(checked, int(g.weights.size()));
  }
}

// y = W x as matvec_kernel computes it, its warps run one lane after another: the lane
// sums, then warp_sum's butterfly (each level adds the lane `offset` away), with the
// readers the kernel would choose for these (16-byte aligned) vectors.
std::vector<float> host_matvec(WeightType type, const Tiled& m, const std::vector<float>& x) {
  std::vector<float> y(m.rows);
  const size_t row_bytes = weight_row_bytes(type, m.cols);
  cuda_quant::with_reader(type, m.cols % cuda_quant::kChunk == 0, [&](auto tag) {
    using Reader = typename decltype(tag)::type;
    for (int r = 0; r < m.rows; r++) {
      float lanes[32];
      for (int lane = 0; lane < 32; lane++)
        lanes[lane] = cuda_quant::matvec_lane_sum<Reader>(
            m.bytes.data() + r * row_bytes, m.cols / Reader::kBlockWeights, x.data(), lane);
      for (int offset = 16; offset > 0; offset /= 2) {
        float sums[32];
        for (int lane = 0; lane < 32; lane++) sums[lane] = lanes[lane] + lanes[lane ^ offset];
        std::copy_n(sums, 32, lanes);
      }
      y[r] = lanes[0];
    }
  });
  return y;
}

// Row r of the matrix is golden block r (blocks of 1 weight: 8 of them, so the float rows
// take their 8-wide readers), and x = e_c picks column c: every other product is an exact
// zero, so y[r] = W[r][c] exactly when the lane that reads weight c multiplies it by x[c].
TEST_P(CudaReadersOnHost, MatvecLanesPickEveryGoldenWeight) {
  const Golden g(GetParam());
  const Tiled m = tile(g, g.n_blocks(), std::max(1, 8 / g.block_weights), [](int r) { return r; });
  for (int c = 0; c < m.cols; c++) {
    std::vector<float> one_hot(m.cols, 0.0f);
    one_hot[c] = 1.0f;
    const std::vector<float> y = host_matvec(GetParam().type, m, one_hot);
    for (int r = 0; r < m.rows; r++)
      ASSERT_EQ(y[r], m.weights[size_t(r) * m.cols + c]) << "row " << r << ", column " << c;
  }
}

// The shapes and bound of CudaQuant.MatvecMatchesFloat64Reference (quant_golden.h).
TEST_P(CudaReadersOnHost, MatvecLanesMatchFloat64Reference) {
  const Golden g(GetParam());
  for (const Tiled& m : matvec_matrices(g)) {
    SCOPED_TRACE(std::to_string(m.rows) + " x " + std::to_string(m.cols));
    const std::vector<float> x = matvec_input(m);
    const std::vector<float> y = host_matvec(GetParam().type, m, x);
    for (int r = 0; r < m.rows; r++) {
      const RowReference ref = row_reference(m, x, r);
      EXPECT_NEAR(y[r], ref.exact, ref.bound) << "row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(, CudaReadersOnHost, ::testing::ValuesIn(kTypes), type_param_name);

// The intrinsics' host versions on the cases the readers rely on, from CUDA's descriptions.
TEST(CudaHostIntrinsics, FollowCudaDefinitions) {
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x3210u), 0x33221100u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x7654u), 0x77665544u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x0123u), 0x00112233u);
  // byte_minus's permutation: byte k of the word under the exponent of 2^23.
  EXPECT_EQ(__byte_perm(0xa1b2c3d4u, 0x4b000000u, 0x7442u), 0x4b0000b2u);
  EXPECT_EQ(__uint_as_float(0x4b000000u), 8388608.0f);
  EXPECT_EQ(__fsub_rn(__uint_as_float(0x4b0000b2u), 8388608.0f + 8.0f), float(0xb2 - 8));
}

}  // namespace
}  // namespace kvlm
#endif  // KVLM_CUDA
