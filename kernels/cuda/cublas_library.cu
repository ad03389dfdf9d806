// cuBLAS, opened when the first CUDA backend is made. Linking it would load it into every
// kvlm process of a CUDA build: about 140 MiB of resident memory (its static tables) and a
// tenth of a second at start-up, for CPU runs too. Opened on demand, it costs nothing
// until a GPU is used.
#include <dlfcn.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

template <class F>
void resolve(void* library, const char* symbol, F& f) {
  f = reinterpret_cast<F>(dlsym(library, symbol));
  if (!f)
    throw std::runtime_error(std::string("cuda: ") + cublas_library_name() + " has no " + symbol);
}

CublasLibrary open_cublas() {
  // RTLD_LOCAL: its symbols serve this table only. The search follows the executable's
  // run path ($ORIGIN/lib, the build's CUDA lib64), LD_LIBRARY_PATH and the loader cache.
  void* library = dlopen(cublas_library_name(), RTLD_NOW | RTLD_LOCAL);
  if (!library)
    throw std::runtime_error(std::string("cuda: cannot open cuBLAS: ") + dlerror() +
                             " (install the CUDA toolkit's cuBLAS, or add its directory to "
                             "LD_LIBRARY_PATH)");
  CublasLibrary api;
  // cublas_v2.h names most of these through macros; the library exports the _v2 symbols.
  resolve(library, "cublasCreate_v2", api.create);
  resolve(library, "cublasDestroy_v2", api.destroy);
  resolve(library, "cublasSetStream_v2", api.set_stream);
  resolve(library, "cublasSetWorkspace_v2", api.set_workspace);
  resolve(library, "cublasGemmEx", api.gemm_ex);
  resolve(library, "cublasGetStatusString", api.status_string);
  return api;  // the library stays open for the process's life
}

}  // namespace

const char* cublas_library_name() {
  // The major version of the headers built against: its ABI is what the calls assume.
#define KVLM_STRINGIFY2(x) #x
#define KVLM_STRINGIFY(x) KVLM_STRINGIFY2(x)
  return "libcublas.so." KVLM_STRINGIFY(CUBLAS_VER_MAJOR);
}

void open_cublas_library() { cublas(); }

const CublasLibrary& cublas() {
  static const CublasLibrary api = open_cublas();  // a failed open throws, and retries next time
  return api;
}

}  // namespace kvlm
