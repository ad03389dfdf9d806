// Quantised weights on the GPU: kernels/cuda/quant.h is the interface.
//
// Every weight type is read in chunks of 8 consecutive weights (1 for float rows whose
// length or alignment rules out 16-byte loads). A reader (kernels/cuda/quant_readers.cuh)
// rebuilds one chunk of one block as floats; the two kernels are written once over them:
//   matvec      one warp per row. Lane i always takes the same chunk of its blocks, so
//               the unpacking's shifts and offsets are worked out once; a warp step reads
//               256 consecutive weights (one k-quant super-block, or 8 blocks of 32), the
//               warp's loads covering one contiguous span of the row.
//   dequantize  one thread per chunk, stored with 16-byte stores (8 halves, or 4 floats).
//
// The weights come out bit for bit as the CPU reference (gguf's numpy dequantisers)
// computes them: the reference rounds every product and every sum on its own, so the
// rebuilding uses __fmul_rn / __fadd_rn, which nvcc never fuses into one rounding.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/quant.h"
#include "kernels/cuda/quant_readers.cuh"

namespace kvlm::cuda_quant {

namespace {

using namespace kvlm::quant;

constexpr int kThreads = 256;  // per block, both kernels
constexpr int kRowsPerBlock = kThreads / 32;

// ---- kernels ------------------------------------------------------------------------

// One warp per row: each lane sums its share of the row (matvec_lane_sum, in
// quant_readers.cuh), then the warp adds up its lanes.
template <class Reader>
__global__ void __launch_bounds__(kThreads)
    matvec_kernel(const uint8_t* w, size_t row_bytes, int n_blocks, int rows, const float* x,
                  float* y) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;  // the whole warp leaves: warp_sum needs all 32 lanes
  const float acc = warp_sum(matvec_lane_sum<Reader>(w + size_t(row) * row_bytes, n_blocks, x, lane));
  if (lane == 0) y[row] = acc;
}

__device__ inline uint32_t bits_of(__half h) { return __half_as_ushort(h); }
__device__ inline uint32_t bits_of(__nv_bfloat16 h) { return __bfloat16_as_ushort(h); }

// The 8 weights of chunk c, each rounded once to Out, into 16-byte aligned `out`.
template <class Out>
__device__ inline void store_chunk(Out* out, int64_t c, const float (&v)[kChunk]) {
  if constexpr (std::is_same_v<Out, float>) {
    float4* dst = reinterpret_cast<float4*>(out + c * kChunk);
    dst[0] = make_float4(v[0], v[1], v[2], v[3]);
    dst[1] = make_float4(v[4], v[5], v[6], v[7]);
  } else {
    uint32_t words[kChunk / 2];
#pragma unroll
    for (int k = 0; k < kChunk / 2; k++)
      words[k] = bits_of(from_float<Out>(v[2 * k])) | bits_of(from_float<Out>(v[2 * k + 1])) << 16;
    reinterpret_cast<uint4*>(out)[c] = make_uint4(words[0], words[1], words[2], words[3]);
  }
}

// One thread per chunk: rebuilt, rounded once to Out (float, __half or __nv_bfloat16), stored.
template <class Reader, class Out>
__global__ void dequantize_kernel(const uint8_t* w, int64_t chunks, Out* out) {
  constexpr int kWidth = Reader::kWidth, kChunksPerBlock = Reader::kBlockWeights / kWidth;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= chunks) return;
  float v[kWidth];
  Reader::load(w, c / kChunksPerBlock, int(c % kChunksPerBlock) * kWidth, v);
  if constexpr (kWidth == kChunk) {
    store_chunk(out, c, v);
  } else {
    static_assert(kWidth == 1);
    out[c] = from_float<Out>(v[0]);
  }
}

// ---- argument checks ----------------------------------------------------------------

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

void check_whole_blocks(WeightType type, int64_t n, const char* op) {
  const int per_block = weight_type_info(type).block_elems;
  if (n < 0 || n % per_block != 0)
    throw std::invalid_argument(std::string(op) + ": " + std::to_string(n) + " weights of " +
                                weight_type_name(type) + " are not a whole number of its " +
                                std::to_string(per_block) + "-weight blocks");
}

// The block types read their bytes 4 at a time (load8) and the vector beside them (x, or
// the output) 16 bytes at a time.
void check_block_alignment(WeightType type, const void* w, const void* vec, const char* op) {
  if (is_quantized(type) && !(aligned(w, 4) && aligned(vec, 16)))
    throw std::invalid_argument(std::string(op) + ": " + weight_type_name(type) +
                                " needs 4-byte aligned weights and a 16-byte aligned vector");
}

}  // namespace

void matvec(WeightType type, const void* w, int rows, int cols, const float* x, float* y,
            void* stream) {
  const char* op = "cuda quant matvec";
  check_whole_blocks(type, cols, op);
  if (rows < 0) throw std::invalid_argument(std::string(op) + ": negative row count");
  check_block_alignment(type, w, x, op);
  if (rows == 0) return;
  const bool wide = cols % kChunk == 0 && aligned(w, 16) && aligned(x, 16);
  const int blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  with_reader(type, wide, [&](auto tag) {
    using Reader = typename decltype(tag)::type;
    matvec_kernel<Reader><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const uint8_t*>(w), weight_row_bytes(type, cols), cols / Reader::kBlockWeights,
        rows, x, y);
  });
  cuda_check(cudaGetLastError(), op);
}

void dequantize(WeightType type, const void* w, int64_t n, void* out, DType out_dtype,
                void* stream) {
  const char* op = "cuda quant dequantize";
  check_whole_blocks(type, n, op);
  check_block_alignment(type, w, out, op);
  if (n == 0) return;
  const bool wide = n % kChunk == 0 && aligned(w, 16) && aligned(out, 16);
  with_reader(type, wide, [&](auto tag) {
    using Reader = typename decltype(tag)::type;
    const int64_t chunks = n / Reader::kWidth, blocks = (chunks + kThreads - 1) / kThreads;
    if (blocks > INT32_MAX)
      throw std::invalid_argument(std::string(op) + ": " + std::to_string(n) +
                                  " weights in one launch");
    with_storage_type(out_dtype, [&](auto out_tag) {
      using Out = typename decltype(out_tag)::type;
      dequantize_kernel<Reader><<<unsigned(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<const uint8_t*>(w), chunks, static_cast<Out*>(out));
    });
  });
  cuda_check(cudaGetLastError(), op);
}

}  // namespace kvlm::cuda_quant
