# kvlm build.  make            -> ./kvlm
#              make test       -> build and run the GoogleTest suite (fetches the default model;
#                                 the CUDA cases skip with a message when no GPU is visible)
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

CXXFLAGS := -std=c++20 $(OPT) -Wall -Wextra -fopenmp -MMD -MP -Isrc -I. 
LDFLAGS  := $(LDOPT) -fopenmp
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

.PHONY: all run test test-gpu bench deps model clean
all: kvlm

kvlm: $(BUILD)/kvlm
	cp $< $@

$(BUILD)/kvlm: $(BUILD)/src/main.o $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/kvlm_tests: $(TEST_OBJ) $(LIB_OBJ) $(CU_OBJ)
	$(CXX) $(LDFLAGS) -o $@ $^ -lgtest -lgtest_main $(LDLIBS)

$(BUILD)/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu
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
$(MODEL):
	weights/get-default.sh

# Libraries come from Debian; tools count as present when they run, wherever they came from.
DEB_LIBS  := libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev libsentencepiece-dev
deps:
	@missing=""; \
	for p in $(DEB_LIBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	command -v python3 >/dev/null || missing="$$missing python3"; \
	python3 -m pip --version >/dev/null 2>&1 || missing="$$missing python3-pip"; \
	if [ -z "$$missing" ]; then echo "deps: all present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: missing$$missing; run: sudo apt-get install -y$$missing" >&2; exit 1; fi

clean:
	rm -rf build kvlm

-include $(LIB_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CU_OBJ:.o=.d) $(BUILD)/src/main.d
