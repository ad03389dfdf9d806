// Row movement: token embedding lookup, appending a layer's new keys/values to the storage
// of all its KV heads (rounded to the cache's dtype) in one kernel, copying rows between
// cache buffers, and compaction of a cache after eviction.
#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/quant.h"

namespace kvlm {

namespace {

// One block per token.
template <class W>
__global__ void embedding_kernel(float* out, const W* table, const int32_t* ids, int dim) {
  const W* row = table + size_t(ids[blockIdx.x]) * dim;
  float* o = out + size_t(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = to_float(row[i]);
}

// Thread i of block (t, h) writes element i of token t's key and value rows in head h.
template <class K>
__global__ void append_kv_kernel(const KVAppendTarget* dst, const float* keys,
                                 const float* values, int row_stride, int head_dim) {
  const int t = blockIdx.x, h = blockIdx.y;
  const size_t src = size_t(t) * row_stride + size_t(h) * head_dim, row = size_t(t) * head_dim;
  K* k = static_cast<K*>(dst[h].keys) + row;
  K* v = static_cast<K*>(dst[h].values) + row;
  for (int c = threadIdx.x; c < head_dim; c += blockDim.x) {
    k[c] = from_float<K>(keys[src + c]);
    v[c] = from_float<K>(values[src + c]);
  }
}

// gathered[r] = buf[keep[r]] for r < n, cols words W per row.
template <class W>
__global__ void gather_rows_kernel(W* gathered, const W* buf, const int32_t* keep, int n,
                                   int cols) {
  const size_t total = size_t(n) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    gathered[i] = buf[size_t(keep[r]) * cols + c];
  }
}

}  // namespace

// A quantised table's rows of this call's tokens are gathered, then rebuilt as float32 in
// one call (the values the CPU's dequantize_row gives): two launches whatever T.
void CudaBackend::embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) {
  if (T == 0) return;
  const WeightRows& part = table.parts.front();  // a token table is one tensor: one part
  const int32_t* device_ids = stage(ids, T);
  if (!is_quantized(part.type)) {
    with_storage_type(float_dtype(part.type), [&](auto tag) {
      using W = typename decltype(tag)::type;
      embedding_kernel<W><<<T, 256, 0, stream_>>>(out, static_cast<const W*>(part.data),
                                                  device_ids, table.cols);
    });
    launched("embedding");
    return;
  }
  const size_t row_bytes = weight_row_bytes(part.type, table.cols);
  auto* rows = static_cast<uint8_t*>(scratch(quantized_rows_, T * row_bytes, "embedding rows"));
  gather_rows_kernel<uint8_t><<<blocks_for(T * row_bytes, 256), 256, 0, stream_>>>(
      rows, static_cast<const uint8_t*>(part.data), device_ids, T, int(row_bytes));
  launched("embedding (gather)");
  cuda_quant::dequantize(part.type, rows, int64_t(T) * table.cols, out, DType::F32, stream_);
  launched("embedding (dequantise)");
}

// The destinations of all heads travel in one staged array: one copy and one launch per
// layer, however many heads.
void CudaBackend::append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                            const float* values, int row_stride, int head_dim, int T) {
  if (T == 0 || dst.empty()) return;
  const KVAppendTarget* device_dst = stage(dst.data(), dst.size());
  with_storage_type(dtype, [&](auto tag) {
    append_kv_kernel<typename decltype(tag)::type>
        <<<dim3(T, int(dst.size())), std::min(head_dim, 256), 0, stream_>>>(
            device_dst, keys, values, row_stride, head_dim);
  });
  launched("append_kv");
}

void CudaBackend::copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride,
                            int rows, size_t row_bytes) {
  if (rows == 0 || row_bytes == 0) return;
  cuda_check(cudaMemcpy2DAsync(dst, dst_stride, src, src_stride, row_bytes, rows,
                               cudaMemcpyDeviceToDevice, stream_),
             "copy_rows");
  launched("copy_rows");
}

// Rows move towards the front, so a thread copying row r in place could overwrite a row
// another thread has yet to read: the kept rows are gathered into scratch first, moved as
// 4-byte words when rows allow it, else as 2-byte ones (a 16-bit row of odd head_dim).
void CudaBackend::compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) {
  if (n == 0 || row_bytes == 0) return;
  const size_t total_bytes = size_t(n) * row_bytes;
  void* gathered = scratch(gather_, total_bytes, "compaction scratch");
  const int32_t* device_keep = stage(keep, n);
  auto gather = [&](auto word) {
    using W = decltype(word);
    const int cols = int(row_bytes / sizeof(W));
    gather_rows_kernel<W><<<blocks_for(total_bytes / sizeof(W), 256), 256, 0, stream_>>>(
        static_cast<W*>(gathered), static_cast<const W*>(buf), device_keep, n, cols);
  };
  if (row_bytes % 4 == 0) gather(uint32_t{});
  else gather(uint16_t{});
  launched("compact_rows");
  cuda_check(cudaMemcpyAsync(buf, gathered, total_bytes, cudaMemcpyDeviceToDevice, stream_),
             "compact_rows");
}

}  // namespace kvlm
