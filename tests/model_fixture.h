// Shared by the suites that need the default model: loaded once per test binary.
#pragma once
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "model/load.h"

namespace kvlm::test {

inline std::string model_path() {
  const char* env = std::getenv("KVLM_MODEL");
  return env ? env : "weights/SmolLM2-135M-Instruct.Q4_1.gguf";
}

inline bool have_model() { return bool(std::ifstream(model_path())); }

#define KVLM_REQUIRE_MODEL()                                                                \
  if (!::kvlm::test::have_model())                                                       \
  GTEST_SKIP() << "needs the default model at " << ::kvlm::test::model_path()            \
               << " (KVLM_MODEL); `make model` fetches it, `make test` does so itself"

// On the float32 path (--dtype f32 --f32-prefill: weights widened at load, inputs
// unrounded, no bf16 products), the numbers the transformers goldens were computed with;
// the file's own Q4_1 path is held to llama.cpp's numbers instead (test_quant_models.cpp).
struct LoadedDefaultModel {
  CpuBackend backend{0, WeightType::F32, false};
  ModelFile file{model_path()};
  std::unique_ptr<Model> model = file.load(backend);
};

// The default model, loaded on first use (loading takes about a second).
inline LoadedDefaultModel& default_model() {
  static LoadedDefaultModel m;
  return m;
}

// An observer that runs `strategy` inside the default model's forward pass.
inline KVObserver observer(KVStrategy& strategy) {
  const ModelConfig& c = default_model().model->config();
  return KVObserver(default_model().backend, strategy, c.n_heads, c.head_dim);
}

// Directory of committed test data (tests/data), found from the working directory.
inline std::string data_path(const std::string& name) { return "tests/data/" + name; }

}  // namespace kvlm::test
