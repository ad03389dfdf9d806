// llama.cpp as an independent reference for kvlm's forward pass: evaluates a token sequence
// in one batch, keeping the logits of every position, then continues it greedily.
//
//   llamacpp_logits MODEL LOGITS_OUT N_GREEDY TOKEN...
//
// LOGITS_OUT receives float32 [tokens][vocab], row by row; the greedy continuation goes to
// stdout as space-separated token ids. The KV cache is float32 and flash attention is off,
// so the differences from kvlm come from the weights' matmuls, not from the cache.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "llamacpp_logits: %s\n", message.c_str());
  std::exit(1);
}

int argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; i++)
    if (logits[i] > logits[best]) best = i;
  return best;
}

void decode(llama_context* ctx, const std::vector<llama_token>& tokens, int first_pos, bool all_logits) {
  llama_batch batch = llama_batch_init(int32_t(tokens.size()), 0, 1);
  for (size_t i = 0; i < tokens.size(); i++) {
    batch.token[i] = tokens[i];
    batch.pos[i] = first_pos + int32_t(i);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = all_logits || i + 1 == tokens.size();
  }
  batch.n_tokens = int32_t(tokens.size());
  const int rc = llama_decode(ctx, batch);
  llama_batch_free(batch);
  if (rc != 0) die("llama_decode returned " + std::to_string(rc));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) die("usage: llamacpp_logits MODEL LOGITS_OUT N_GREEDY TOKEN...");
  const std::string model_path = argv[1], logits_path = argv[2];
  const int n_greedy = std::atoi(argv[3]);
  std::vector<llama_token> tokens;
  for (int i = 4; i < argc; i++) tokens.push_back(std::atoi(argv[i]));
  const int n_tokens = int(tokens.size());

  llama_backend_init();
  llama_log_set([](ggml_log_level level, const char* text, void*) {
    if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
  }, nullptr);

  llama_model_params model_params = llama_model_default_params();
  model_params.n_gpu_layers = 0;
  llama_model* model = llama_model_load_from_file(model_path.c_str(), model_params);
  if (!model) die("cannot load " + model_path);
  const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

  llama_context_params ctx_params = llama_context_default_params();
  ctx_params.n_ctx = uint32_t(n_tokens + n_greedy);
  ctx_params.n_batch = ctx_params.n_ubatch = uint32_t(n_tokens);  // one batch, one ubatch
  ctx_params.n_threads = ctx_params.n_threads_batch = 2;
  ctx_params.type_k = ctx_params.type_v = GGML_TYPE_F32;
  ctx_params.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
  ctx_params.no_perf = true;
  llama_context* ctx = llama_init_from_model(model, ctx_params);
  if (!ctx) die("cannot create a context");

  decode(ctx, tokens, 0, true);
  FILE* out = std::fopen(logits_path.c_str(), "wb");
  if (!out) die("cannot write " + logits_path);
  for (int i = 0; i < n_tokens; i++)
    if (std::fwrite(llama_get_logits_ith(ctx, i), sizeof(float), n_vocab, out) != size_t(n_vocab))
      die("cannot write " + logits_path);
  std::fclose(out);

  llama_token next = argmax(llama_get_logits_ith(ctx, n_tokens - 1), n_vocab);
  for (int i = 0; i < n_greedy; i++) {
    std::printf(i ? " %d" : "%d", next);
    if (i + 1 == n_greedy) break;
    decode(ctx, {next}, n_tokens + i, false);
    next = argmax(llama_get_logits_ith(ctx, -1), n_vocab);
  }
  std::printf("\n");

  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return 0;
}
