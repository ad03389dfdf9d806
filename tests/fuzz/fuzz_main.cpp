// The libFuzzer entry point of one harness, chosen when compiling:
//   clang++ -fsanitize=fuzzer,... -DKVLM_FUZZ_TARGET=gguf  ->  calls fuzz_gguf
#include "tests/fuzz/targets.h"

#ifndef KVLM_FUZZ_TARGET
#error "compile with -DKVLM_FUZZ_TARGET=<name>, one of the harnesses in targets.h"
#endif

#define KVLM_FUZZ_CONCAT(a, b) a##b
#define KVLM_FUZZ_FUNCTION(name) KVLM_FUZZ_CONCAT(fuzz_, name)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvlm::fuzz::KVLM_FUZZ_FUNCTION(KVLM_FUZZ_TARGET)(data, size);
  return 0;
}
