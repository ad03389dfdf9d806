# kvlm build.  make            -> ./kvlm (a missing package stops it first, naming `make deps`)
#              make test       -> install missing packages, build and run the GoogleTest suite
#                                 (fetches the default model; the CUDA cases skip with a
#                                 message when no GPU is visible)
#              make test-gpu   -> only the CUDA cases; a missing GPU fails them
#              make run        -> install what is missing, fetch the default model, chat with it
#              make bench      -> speed and KV memory of every method on the default model (4K)
#              make deps       -> Debian packages (apt-get as root, else the command to run)
#              DEBUG=1         -> -O1 -g with AddressSanitizer + UBSan (separate build dir)
#              CUDA=0          -> do not compile the CUDA backend even when nvcc is present

CXX      ?= g++
DEBUG    ?= 0
NVCC     ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA     ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

MODEL    := weights/SmolLM2-135M-Instruct.Q4_1.gguf

ifeq ($(DEBUG),1)
  BUILD    := build/debug
  OPT      := -O1 -g -march=native -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  LDOPT    := -fsanitize=address,undefined
  # The CUDA driver maps memory where AddressSanitizer's shadow gap would be.
  TEST_ENV := ASAN_OPTIONS=protect_shadow_gap=0:$(ASAN_OPTIONS)
else
  BUILD    := build/release
  OPT      := -O3 -march=native -DNDEBUG
  LDOPT    :=
endif

# A build without CUDA keeps its objects apart: they are compiled without KVLM_CUDA.
ifneq ($(CUDA),1)
  BUILD := $(BUILD)-cpu
endif

# Threads come from kvlm's own pool (src/util/thread_pool.h); OpenMP only marks SIMD loops.
# -Wno-psabi: GCC notes that 64-byte vectors (kernels/cpu/simd.h) pass differently without
# AVX-512; they never cross a translation unit, so the note is noise on AVX2 machines.
CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -Wno-psabi -fopenmp-simd -MMD -MP -Isrc -I.
LDFLAGS  := $(LDOPT)
LDLIBS   := -lsentencepiece -lpthread

LIB_SRC  := $(wildcard src/model/*.cpp src/kv/*.cpp src/kv/strategies/*.cpp src/eval/*.cpp \
                       src/util/*.cpp src/*.cpp tokenizer/*.cpp kernels/cpu/*.cpp)
LIB_SRC  := $(filter-out src/main.cpp,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/%.o)
TEST_SRC := $(wildcard tests/*.cpp)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)

CU_SRC := $(if $(filter 1,$(CUDA)),$(wildcard kernels/cuda/*.cu))
ifneq ($(CU_SRC),)
  CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
  CXXFLAGS  += -DKVLM_CUDA=1 -I$(CUDA_HOME)/include
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart
  NVCCFLAGS := -std=c++20 -O3 -Isrc -I. -gencode arch=compute_90,code=[sm_90,compute_90] \
               -lineinfo -Xcompiler -Wall,-Wextra -MMD -MP
endif

# Libraries come from Debian. Each header the build needs, with the package that provides
# it: a header the compiler cannot find means a missing package, whatever installed the rest.
BUILD_HEADERS := CLI/CLI.hpp=libcli11-dev nlohmann/json.hpp=nlohmann-json3-dev \
                 sentencepiece_processor.h=libsentencepiece-dev
TEST_HEADERS  := gtest/gtest.h=libgtest-dev gmock/gmock.h=libgmock-dev
HASH := \#
has_include_checks = $(foreach p,$(1),$(HASH)if !__has_include(<$(firstword $(subst =, ,$(p)))>)\n$(HASH)error $(lastword $(subst =, ,$(p)))\n$(HASH)endif\n)
# The packages of $(1) whose headers are missing, found by one compiler run.
missing_packages = $(strip $(shell printf '$(call has_include_checks,$(1))' | \
                     $(CXX) -fsyntax-only -x c++ - 2>&1 | sed -n 's/.*error: .error //p'))

# Every compile waits for a dependency check. The README's commands (`make test`, `make run`)
# install what is missing; any other build names the fix in one line and compiles nothing.
INSTALL_GOALS := test test-gpu run bench
DEPS_GATE := $(if $(filter $(INSTALL_GOALS),$(MAKECMDGOALS)),deps,check-deps)
CHECKED_HEADERS := $(BUILD_HEADERS) $(if $(filter test test-gpu %kvlm_tests,$(MAKECMDGOALS)),$(TEST_HEADERS))

.PHONY: all run test test-gpu bench deps model clean
all: kvlm

kvlm: $(BUILD)/kvlm
	cp $< $@

$(BUILD)/kvlm: $(BUILD)/src/main.o $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/kvlm_tests: $(TEST_OBJ) $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main $(LDLIBS)

$(BUILD)/%.o: %.cpp | $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu | $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# The test binary finds the kvlm executable and the default model through these variables.
test: $(BUILD)/kvlm_tests $(BUILD)/kvlm model
	$(TEST_ENV) KVLM_BIN=$(BUILD)/kvlm KVLM_MODEL=$(MODEL) $(BUILD)/kvlm_tests

ifeq ($(CUDA),1)
test-gpu: $(BUILD)/kvlm_tests $(BUILD)/kvlm model
	$(TEST_ENV) KVLM_REQUIRE_GPU=1 KVLM_BIN=$(BUILD)/kvlm KVLM_MODEL=$(MODEL) \
	  $(BUILD)/kvlm_tests --gtest_filter='*cuda*:*Cuda*'
else
test-gpu:
	@echo "test-gpu: this build has no CUDA backend (nvcc not found, or CUDA=0)" >&2; exit 1
endif

# Every KV method at budget 256 on a 4K prompt (methods without a budget as they come).
BENCH_METHODS := full,streaming:budget=256,h2o:budget=256,snapkv:budget=256,pyramidkv:budget=256,adakv:budget=256,dynamickv:budget=256,simlayerkv,knorm:budget=256,minicache
bench: kvlm model
	./kvlm bench --model $(MODEL) --prompt-len 4096 --gen 32 --kv-list $(BENCH_METHODS)

run: deps model kvlm
	./kvlm chat --model $(MODEL)

model: $(MODEL)
$(MODEL): | $(filter deps,$(DEPS_GATE))
	weights/get-default.sh

.PHONY: check-deps
check-deps:
	@command -v $(CXX) >/dev/null || { echo "kvlm: no C++ compiler ($(CXX)); run: make deps" >&2; exit 1; }
	@missing="$(call missing_packages,$(CHECKED_HEADERS))"; [ -z "$$missing" ] || { \
	  echo "kvlm: missing Debian packages: $$missing; run: make deps (as root), or: sudo apt-get install -y $$missing" >&2; \
	  exit 1; }

# Tools count as present when they run, wherever they came from.
deps:
	@missing=""; \
	if command -v $(CXX) >/dev/null; then missing="$(call missing_packages,$(BUILD_HEADERS) $(TEST_HEADERS))"; \
	else missing="g++ $(foreach p,$(BUILD_HEADERS) $(TEST_HEADERS),$(lastword $(subst =, ,$(p))))"; fi; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -z "$$missing" ]; then echo "deps: all present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: missing $$missing; run: sudo apt-get install -y $$missing" >&2; exit 1; fi

clean:
	rm -rf build kvlm

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BUILD)/src/main.d
