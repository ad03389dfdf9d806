# kvlm build.  make            -> ./kvlm (a missing package stops it first, naming `make deps`)
#              make test       -> install missing packages, build and run the GoogleTest suite
#                                 (fetches the default model; the CUDA cases skip with a
#                                 message when no GPU is visible)
#              make test-gpu   -> only the CUDA cases; a missing GPU fails them
#              make run        -> install what is missing, fetch the default model, chat with it
#              make bench      -> speed and KV memory of every method on the default model (4K)
#              make deps       -> Debian packages (apt-get as root, else the command to run)
#              make fuzz       -> build the libFuzzer harnesses (clang) and run each FUZZ_SECONDS
#                                 (default 60); a crash fails and names its input file
#              make fuzz-build -> only build them: build/fuzz/fuzz_<target>, seeds in
#                                 build/fuzz/corpus/<target>
#              DEBUG=1         -> -O1 -g with AddressSanitizer + UBSan (separate build dir)
#              CUDA=0          -> do not compile the CUDA backend even when nvcc is present
#              make gpu-kit    -> build/gpu-kit: kvlm and the test binary with the libraries a GPU
#                                 machine lacks, tests/data and run.sh OUTDIR (README, GPU)

CXX      ?= g++
DEBUG    ?= 0
NVCC     ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
CUDA     ?= $(if $(NVCC),1,0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

MODEL    := weights/SmolLM2-135M-Instruct.Q4_1.gguf
# The sampling of SmolLM2's model card (its GGUF file declares none; a model that does, in
# generation_config.json or GGUF general.sampling.*, needs no flags). Empty: kvlm's defaults.
RUN_SAMPLING ?= --temp 0.2 --top-p 0.9

# Every build runs on any x86-64 of the last 15 years, so the binaries tested here are the
# ones the GPU kit carries: kernels/cpu/simd.h's clones give the hot loops AVX2 or AVX-512
# where the CPU has them (measured against -march=native: the same speed, README).
ARCH     := -march=x86-64-v2 -mtune=generic

# The tests' own sources (TEST_OPT) are compiled with less optimisation than the code they
# test: they are half of the build's compile time and almost none of the tests' run time.
ifeq ($(DEBUG),1)
  BUILD    := build/debug
  SANITIZE := -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
  # Line tables (-g1) are all the sanitizers' stack traces use; full -g costs a third more.
  # -fexpensive-optimizations (on from -O2) is the pass that fuses a * b + c into one
  # multiply-add: with it the kernels round as the release build's do, and the tests that
  # want two code paths' sums bit for bit (Strips.Float32ProductsInEveryTileShape) hold here too.
  OPT      := -O1 -fexpensive-optimizations -g1 $(ARCH) $(SANITIZE)
  TEST_OPT := -O0 -g1 $(ARCH) $(SANITIZE)
  LDOPT    := -fsanitize=address,undefined
  # The CUDA driver maps memory where AddressSanitizer's shadow gap would be.
  TEST_ENV := ASAN_OPTIONS=protect_shadow_gap=0:$(ASAN_OPTIONS)
  CUDART   := -lcudart
else
  BUILD    := build/release
  OPT      := -O3 $(ARCH) -DNDEBUG
  TEST_OPT := -O1 $(ARCH) -DNDEBUG
  # The C++ and CUDA runtimes are linked in, so another machine's versions do not matter;
  # the other shared libraries (libsentencepiece) are looked for in lib/ beside the binary
  # first (the GPU kit), then where the system keeps them.
  LDOPT    := -static-libstdc++ -static-libgcc -Wl,-rpath,'$$ORIGIN/lib'
  CUDART   := -lcudart_static -ldl -lrt
endif

# A build without CUDA keeps its objects apart: they are compiled without KVLM_CUDA.
ifneq ($(CUDA),1)
  BUILD := $(BUILD)-cpu
endif

# Threads come from kvlm's own pool (src/util/thread_pool.h); OpenMP only marks SIMD loops.
# -Wno-psabi: GCC notes that 64-byte vectors (kernels/cpu/simd.h) pass differently without
# AVX-512; they never cross a translation unit, so the note is noise on AVX2 machines.
CXXFLAGS  = -std=c++20 $(OPT) -Wall -Wextra -Wno-psabi -fopenmp-simd -MMD -MP -Isrc -I.
LDFLAGS  := $(LDOPT)
LDLIBS   := -lsentencepiece -lpthread

LIB_SRC  := $(wildcard src/model/*.cpp src/kv/*.cpp src/kv/strategies/*.cpp src/eval/*.cpp \
                       src/util/*.cpp src/*.cpp tokenizer/*.cpp kernels/cpu/*.cpp)
LIB_SRC  := $(filter-out src/main.cpp,$(LIB_SRC))
LIB_OBJ  := $(LIB_SRC:%.cpp=$(BUILD)/%.o)
# The fuzz harnesses and their seeds run in the test binary too (test_fuzz_regressions.cpp).
TEST_SRC := $(wildcard tests/*.cpp) tests/fuzz/targets.cpp tests/fuzz/seeds.cpp
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/%.o)
$(TEST_OBJ): OPT := $(TEST_OPT)
# It compiles CUDA's readers for the host, where GCC meets nvcc's `#pragma unroll`.
$(BUILD)/tests/test_cuda_readers.o: CXXFLAGS += -Wno-unknown-pragmas

CU_SRC := $(if $(filter 1,$(CUDA)),$(wildcard kernels/cuda/*.cu))
ifneq ($(CU_SRC),)
  CU_OBJ    := $(CU_SRC:%.cu=$(BUILD)/%.o)
  CXXFLAGS  += -DKVLM_CUDA=1 -I$(CUDA_HOME)/include
  # cuBLAS is not linked: the CUDA backend opens it when made (kernels/cuda/cublas_library.cu),
  # through this run path first.
  LDLIBS    += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 $(CUDART) -ldl
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
CHECKED_HEADERS := $(BUILD_HEADERS) $(if $(filter test test-gpu gpu-kit %kvlm_tests,$(MAKECMDGOALS)),$(TEST_HEADERS))

.PHONY: all run test test-gpu bench deps model clean fuzz fuzz-build fuzz-deps gpu-kit
all: kvlm

kvlm: $(BUILD)/kvlm
	cp $< $@

$(BUILD)/kvlm: $(BUILD)/src/main.o $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/kvlm_tests: $(TEST_OBJ) $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main $(LDLIBS)

# Microbenchmarks of CPU kernels, built by name (make build/release/quant_dot).
MICROBENCH := decode_attention decode_matmuls l3_residency prefill_matmul quant_dot
$(MICROBENCH:%=$(BUILD)/%): $(BUILD)/%: $(BUILD)/tests/bench/%.o $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.cpp | $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu | $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

# The test binary finds the kvlm executable and the default model through these variables.
# The README's result files are checked too: each cell recomputed from the answers it holds.
test: $(BUILD)/kvlm_tests $(BUILD)/kvlm model
	$(TEST_ENV) KVLM_BIN=$(BUILD)/kvlm KVLM_MODEL=$(MODEL) $(BUILD)/kvlm_tests
	python3 tests/bench/check_results.py

ifeq ($(CUDA),1)
test-gpu: $(BUILD)/kvlm_tests $(BUILD)/kvlm model
	$(TEST_ENV) KVLM_REQUIRE_GPU=1 KVLM_BIN=$(BUILD)/kvlm KVLM_MODEL=$(MODEL) \
	  $(BUILD)/kvlm_tests --gtest_filter='*cuda*:*Cuda*'
else
test-gpu:
	@echo "test-gpu: this build has no CUDA backend (nvcc not found, or CUDA=0)" >&2; exit 1
endif

# The GPU kit: the release build's two binaries, packed with what a GPU machine lacks
# (tests/gpu_kit/package.sh says what, and checks the size); README's GPU section.
KIT := build/gpu-kit
ifeq ($(CUDA)$(DEBUG),10)
gpu-kit: export KVLM_CXXFLAGS := $(CXXFLAGS)
gpu-kit: export KVLM_LDFLAGS := $(LDFLAGS) $(LDLIBS)
gpu-kit: $(BUILD)/kvlm $(BUILD)/kvlm_tests
	CXX=$(CXX) NVCC=$(NVCC) tests/gpu_kit/package.sh $(BUILD) $(KIT)
else
gpu-kit:
	@echo "gpu-kit: the kit is a release build with the CUDA backend (nvcc missing, CUDA=0 or DEBUG=1)" >&2; exit 1
endif

# Every KV method at budget 256 on a 4K prompt (methods without a budget as they come).
BENCH_METHODS := full,streaming:budget=256,h2o:budget=256,snapkv:budget=256,pyramidkv:budget=256,adakv:budget=256,dynamickv:budget=256,simlayerkv,knorm:budget=256,minicache
bench: kvlm model
	./kvlm bench --model $(MODEL) --prompt-len 4096 --gen 32 --kv-list $(BENCH_METHODS)

run: deps model kvlm
	./kvlm chat --model $(MODEL) $(RUN_SAMPLING)

model: $(MODEL)
$(MODEL): | $(filter deps,$(DEPS_GATE))
	weights/get-default.sh

# Fuzzing: clang's libFuzzer with AddressSanitizer + UBSan, one binary per harness of
# tests/fuzz/targets.h. Only the readers the harnesses reach are compiled; they go into an
# archive so each binary links what it uses. Inputs found to crash are written to
# build/fuzz/crashes/<target>/; new interesting inputs grow build/fuzz/corpus/<target>/.
FUZZ_CXX      ?= clang++
FUZZ_SECONDS  ?= 60
FUZZ_BUILD    := build/fuzz
FUZZ_TARGETS  := gguf safetensors safetensors_index hf_config tokenizer_json gguf_tokenizer \
                 spm_model tokenize chat_template kv_spec replot
FUZZ_FLAGS    := -std=c++20 -O1 -gline-tables-only -fno-omit-frame-pointer \
                 -fsanitize=address,undefined -fno-sanitize-recover=undefined -MMD -MP -Isrc -I.
FUZZ_LIB_SRC  := $(addprefix src/model/,gguf.cpp mapped_file.cpp safetensors.cpp json_file.cpp \
                                        hf_config.cpp config.cpp gguf_tokenizer.cpp dequant.cpp) \
                 kernels/cpu/quant.cpp kernels/cpu/quant_k.cpp \
                 $(wildcard tokenizer/*.cpp src/kv/strategies/*.cpp src/util/*.cpp) \
                 $(addprefix src/kv/,spec.cpp registry.cpp eviction.cpp scoring.cpp \
                                     window_scores.cpp kv_cache.cpp merged_layers.cpp) \
                 src/chat_template.cpp src/eval/report.cpp src/eval/stats.cpp src/eval/svg.cpp \
                 tests/fuzz/targets.cpp
FUZZ_LIB_OBJ  := $(FUZZ_LIB_SRC:%.cpp=$(FUZZ_BUILD)/%.o)
FUZZ_SEED_OBJ := $(addprefix $(FUZZ_BUILD)/tests/,fuzz/make_seeds.o fuzz/seeds.o gguf_writer.o \
                                                  safetensors_writer.o)
FUZZ_MAIN_OBJ := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/main_%.o)
FUZZ_BINS     := $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/%.o: %.cpp | fuzz-deps $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_BUILD)/libkvlm_fuzz.a: $(FUZZ_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

# A static pattern: as a plain one it would match any name, e.g. main_x.d.o.
$(FUZZ_MAIN_OBJ): $(FUZZ_BUILD)/main_%.o: tests/fuzz/fuzz_main.cpp | fuzz-deps $(DEPS_GATE)
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -DKVLM_FUZZ_TARGET=$* -c -o $@ $<

$(FUZZ_BINS): $(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/main_%.o $(FUZZ_BUILD)/libkvlm_fuzz.a
	$(FUZZ_CXX) -fsanitize=fuzzer,address,undefined -o $@ $^ -lsentencepiece

# The seed writer uses the test writers, whose temporary files come from GoogleTest.
$(FUZZ_BUILD)/make_seeds: $(FUZZ_SEED_OBJ) $(FUZZ_BUILD)/libkvlm_fuzz.a
	$(FUZZ_CXX) -fsanitize=address,undefined -o $@ $^ -lgtest -lsentencepiece -lpthread

fuzz-build: $(FUZZ_BINS) $(FUZZ_BUILD)/make_seeds
	$(FUZZ_BUILD)/make_seeds $(FUZZ_BUILD)/corpus

# Each target in turn; make_seeds --list gives each one's longest useful input. Fails at
# the end when any target crashed, after printing its log's report and the input's path.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/logs && rm -f $(FUZZ_BUILD)/logs/failed; \
	$(FUZZ_BUILD)/make_seeds --list | while read -r target max_len; do \
	  mkdir -p $(FUZZ_BUILD)/crashes/$$target; \
	  log=$(FUZZ_BUILD)/logs/$$target.log; \
	  if $(FUZZ_BUILD)/fuzz_$$target $(FUZZ_BUILD)/corpus/$$target -max_total_time=$(FUZZ_SECONDS) \
	       -max_len=$$max_len -timeout=10 -malloc_limit_mb=512 -print_final_stats=1 \
	       -artifact_prefix=$(FUZZ_BUILD)/crashes/$$target/ >$$log 2>&1; then \
	    awk -v t=$$target '/number_of_executed_units/ {n=$$2} /average_exec_per_sec/ {r=$$2} \
	      END {printf "fuzz %-18s %10d runs, %6d/s, $(FUZZ_SECONDS) s\n", t, n, r}' $$log; \
	  else \
	    echo "fuzz $$target: FAILED (log $$log)"; \
	    grep -a -E -A12 'ERROR:|terminate called|fuzz check failed' $$log | head -40; \
	    grep -a 'Test unit written to' $$log; echo $$target >>$(FUZZ_BUILD)/logs/failed; \
	  fi; \
	done; \
	if [ -s $(FUZZ_BUILD)/logs/failed ]; then rm -f $(FUZZ_BUILD)/logs/failed; exit 1; fi

.PHONY: check-deps
check-deps:
	@command -v $(CXX) >/dev/null || { echo "kvlm: no C++ compiler ($(CXX)); run: make deps" >&2; exit 1; }
	@missing="$(call missing_packages,$(CHECKED_HEADERS))"; [ -z "$$missing" ] || { \
	  echo "kvlm: missing Debian packages: $$missing; run: make deps (as root), or: sudo apt-get install -y $$missing" >&2; \
	  exit 1; }

# Installs the packages named in $$missing with apt-get as root; otherwise prints the
# command to run and fails.
install_missing = if [ -z "$$missing" ]; then echo "$@: all present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "$@: installing $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "$@: missing $$missing; run: sudo apt-get install -y $$missing" >&2; exit 1; fi

# Tools count as present when they run, wherever they came from.
deps:
	@missing=""; \
	if command -v $(CXX) >/dev/null; then missing="$(call missing_packages,$(BUILD_HEADERS) $(TEST_HEADERS))"; \
	else missing="g++ $(foreach p,$(BUILD_HEADERS) $(TEST_HEADERS),$(lastword $(subst =, ,$(p))))"; fi; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	$(install_missing)

# make fuzz also needs clang and its libFuzzer runtime (libclang-rt-dev); only fuzzing
# installs them, so `make run` does not pull in a second compiler.
fuzz-deps:
	@missing=""; \
	command -v $(FUZZ_CXX) >/dev/null || missing="clang libclang-rt-dev"; \
	[ -n "$$missing" ] || [ -f "$$($(FUZZ_CXX) -print-runtime-dir)/libclang_rt.fuzzer-$$(uname -m).a" ] || \
	  missing="libclang-rt-dev"; \
	$(install_missing)

clean:
	rm -rf build kvlm

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BUILD)/src/main.d $(MICROBENCH:%=$(BUILD)/tests/bench/%.d)
-include $(FUZZ_LIB_OBJ:.o=.d) $(FUZZ_SEED_OBJ:.o=.d) $(FUZZ_MAIN_OBJ:.o=.d)
