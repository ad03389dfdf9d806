// Row movement: token embedding lookup, copying rows between cache buffers, and
// compaction of a cache after eviction.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

// One block per token.
template <class W>
__global__ void embedding_kernel(float* out, const W* table, const int32_t* ids, int dim) {
  const W* row = table + size_t(ids[blockIdx.x]) * dim;
  float* o = out + size_t(blockIdx.x) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = to_float(row[i]);
}

// gathered[r] = buf[keep[r]] for r < n, cols floats per row.
__global__ void gather_rows_kernel(float* gathered, const float* buf, const int32_t* keep, int n,
                                   int cols) {
  const size_t total = size_t(n) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    gathered[i] = buf[size_t(keep[r]) * cols + c];
  }
}

}  // namespace

void CudaBackend::embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) {
  if (T == 0) return;
  const int32_t* device_ids = stage(ids, T);
  with_weight_type(table.dtype, [&](auto tag) {
    using W = typename decltype(tag)::type;
    embedding_kernel<W><<<T, 256, 0, stream_>>>(out, static_cast<const W*>(table.data),
                                                device_ids, table.cols);
  });
  launched("embedding");
}

void CudaBackend::copy_rows(float* dst, int dst_stride, const float* src, int src_stride, int rows,
                            int cols) {
  if (rows == 0 || cols == 0) return;
  cuda_check(cudaMemcpy2DAsync(dst, size_t(dst_stride) * sizeof(float), src,
                               size_t(src_stride) * sizeof(float), size_t(cols) * sizeof(float),
                               rows, cudaMemcpyDeviceToDevice, stream_),
             "copy_rows");
  launched("copy_rows");
}

// Rows move towards the front, so a thread copying row r in place could overwrite a row
// another thread has yet to read: the kept rows are gathered into scratch first.
void CudaBackend::compact_rows(float* buf, const int32_t* keep, int n, int cols) {
  if (n == 0 || cols == 0) return;
  const size_t total = size_t(n) * cols;
  float* gathered = static_cast<float*>(scratch(gather_, total * sizeof(float), "compaction scratch"));
  const int32_t* device_keep = stage(keep, n);
  gather_rows_kernel<<<blocks_for(total, 256), 256, 0, stream_>>>(gathered, buf, device_keep, n,
                                                                  cols);
  launched("compact_rows");
  cuda_check(cudaMemcpyAsync(buf, gathered, total * sizeof(float), cudaMemcpyDeviceToDevice, stream_),
             "compact_rows");
}

}  // namespace kvlm
