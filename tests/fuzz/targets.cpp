#include "tests/fuzz/targets.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "chat_template.h"
#include "eval/report.h"
#include "eval/svg.h"
#include "kv/spec.h"
#include "kv/strategy.h"
#include "model/gguf.h"
#include "model/gguf_tokenizer.h"
#include "model/hf_config.h"
#include "model/json_file.h"
#include "model/safetensors.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/spm_proto.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvlm::fuzz {
namespace {

namespace fs = std::filesystem;

// Runs f; true when it returned, false when it refused the input the documented way.
template <class F>
bool accepted(F&& f) {
  try {
    f();
    return true;
  } catch (const std::runtime_error&) {
  } catch (const std::invalid_argument&) {
  }
  return false;
}

// A property every input must have. std::logic_error is not one of the refusals above, so
// it escapes the harness and libFuzzer reports it.
void check(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error("fuzz check failed: " + what);
}

// A directory of this process's own, removed at exit; parsers that take paths read the
// input from files in it.
class Scratch {
 public:
  Scratch() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/kvlm-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) throw std::logic_error("cannot create " + pattern);
    root_ = pattern;
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  // <root>/<sub>, created when missing.
  std::string dir(const std::string& sub) const {
    const fs::path p = root_ / sub;
    fs::create_directories(p);
    return p.string();
  }

 private:
  fs::path root_;
};

const Scratch& scratch() {
  static const Scratch s;
  return s;
}

void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::logic_error("cannot write " + path);
}

// Writes `bytes` to dir/name, or removes dir/name when the input has no such part.
void write_part(const std::string& dir, const char* name,
                const std::vector<std::string_view>& parts, size_t index) {
  const std::string path = dir + "/" + name;
  if (index < parts.size()) {
    write_file(path, parts[index]);
  } else {
    std::error_code ec;
    fs::remove(path, ec);
  }
}

std::vector<std::string_view> split_nul(const uint8_t* data, size_t size) {
  std::vector<std::string_view> parts;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  for (;;) {
    const size_t nul = rest.find('\0');
    parts.push_back(rest.substr(0, nul));
    if (nul == std::string_view::npos) return parts;
    rest.remove_prefix(nul + 1);
  }
}

std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Reading every byte of a range makes AddressSanitizer (or the end of the mapping) catch
// ranges the reader handed out but the file does not hold. A volatile sink keeps the
// reads from being optimised away.
void touch(const uint8_t* p, uint64_t n) {
  if (n == 0) return;
  volatile uint8_t sink = p[0];
  sink = p[n - 1];
  (void)sink;
}

// The ids of a fixed text through `tok`, which must all lie in its vocabulary, and back.
void exercise_tokenizer(const Tokenizer& tok) {
  static const std::string kText =
      "Hello, world! <|im_start|>user\n12345 caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd</s><s>\xff\xfe  "
      "\t\n";
  const int n = tok.vocab_size();
  for (bool special : {false, true}) {
    // A model that loads may still refuse a text with an error: libsentencepiece does when
    // a control piece spells a character the text needs (a "<s>" renamed to the space
    // piece). That is a message, not a crash; what the ids must satisfy is checked below.
    std::vector<int32_t> ids;
    if (!accepted([&] { ids = tok.encode(kText, true, special); })) continue;
    for (int32_t id : ids) check(id >= 0 && id < n, "encode gave id " + std::to_string(id));
    tok.decode(ids);
    StreamDecoder stream(tok);
    for (int32_t id : ids) stream.push(id);
    stream.flush();
  }
  for (int32_t id : {0, n / 2, n - 1}) {
    tok.token_bytes(id);
    tok.is_special(id);
  }
  tok.describe();
}

// ---------------------------------------------------------------------------------------
// Model files
// ---------------------------------------------------------------------------------------

void exercise_metadata(const gguf::File& f) {
  for (const auto& entry : f.metadata()) {
    const std::string& key = entry.first;
    accepted([&] { f.get_string(key); });
    accepted([&] { f.get_int(key); });
    accepted([&] { f.get_float(key); });
    accepted([&] { f.get_bool(key); });
    accepted([&] { f.get_strings(key); });
    accepted([&] { f.get_floats(key); });
    accepted([&] { f.get_ints(key); });
  }
}

void exercise_tensors(const gguf::File& f) {
  for (const gguf::TensorInfo& t : f.tensors()) {
    check(f.find_tensor(t.name) == &t, "find_tensor('" + t.name + "')");
    uint64_t n = 1;
    for (uint64_t d : t.dims) n *= d;
    check(n == t.n_elements && gguf::tensor_bytes(t.type, n) == t.n_bytes,
          "sizes of tensor '" + t.name + "'");
    touch(t.data, t.n_bytes);
  }
}

}  // namespace

void fuzz_gguf(const uint8_t* data, size_t size) {
  const std::string path = scratch().dir("gguf") + "/model.gguf";
  write_file(path, as_text(data, size));
  accepted([&] {
    const gguf::File f(path);
    exercise_metadata(f);
    exercise_tensors(f);
  });
}

void fuzz_safetensors(const uint8_t* data, size_t size) {
  const std::string path = scratch().dir("safetensors") + "/model.safetensors";
  write_file(path, as_text(data, size));
  accepted([&] {
    const safetensors::File f(path);
    for (const TensorView& t : f.tensors()) {
      uint64_t n = 1;
      for (uint64_t d : t.shape) n *= d;
      check(n == t.n_elements, "elements of tensor '" + t.name + "'");
      touch(t.data, t.n_elements * (t.type == gguf::TensorType::F32 ? 4 : 2));
    }
  });
}

namespace {

// A .safetensors file holding one F32 tensor of two elements.
std::string one_tensor_file(const std::string& name) {
  const std::string header =
      "{\"" + name + "\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
  std::string bytes(8, '\0');
  for (size_t i = 0; i < 8; ++i) bytes[i] = char((header.size() >> (8 * i)) & 0xff);
  return bytes + header + std::string(8, '\x01');
}

}  // namespace

void fuzz_safetensors_index(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = scratch().dir("sharded");
    write_file(d + "/model-00001-of-00002.safetensors", one_tensor_file("a"));
    write_file(d + "/model-00002-of-00002.safetensors", one_tensor_file("b"));
    return d;
  }();
  write_file(dir + "/model.safetensors.index.json", as_text(data, size));
  accepted([&] {
    const safetensors::ShardSet shards(dir);
    for (const auto& file : shards.files())
      for (const TensorView& t : file->tensors()) touch(t.data, 8);
  });
}

void fuzz_hf_config(const uint8_t* data, size_t size) {
  const std::string dir = scratch().dir("hf_config");
  const std::vector<std::string_view> parts = split_nul(data, size);
  write_part(dir, "config.json", parts, 0);
  write_part(dir, "generation_config.json", parts, 1);
  write_part(dir, "tokenizer_config.json", parts, 2);
  accepted([&] { config_from_hf_directory(dir); });
  accepted([&] { chat_template_from_hf_directory(dir); });
}

void fuzz_tokenizer_json(const uint8_t* data, size_t size) {
  const std::string dir = scratch().dir("tokenizer_json");
  const std::vector<std::string_view> parts = split_nul(data, size);
  write_part(dir, "tokenizer.json", parts, 0);
  write_part(dir, "tokenizer_config.json", parts, 1);
  write_part(dir, "generation_config.json", parts, 2);
  write_part(dir, "config.json", parts, 3);
  std::unique_ptr<Tokenizer> tok;
  if (accepted([&] { tok = tokenizer_from_hf_directory(dir); })) exercise_tokenizer(*tok);
}

void fuzz_gguf_tokenizer(const uint8_t* data, size_t size) {
  const std::string path = scratch().dir("gguf_tokenizer") + "/model.gguf";
  write_file(path, as_text(data, size));
  std::unique_ptr<gguf::File> file;
  std::unique_ptr<Tokenizer> tok;
  if (accepted([&] {
        file = std::make_unique<gguf::File>(path);
        tok = tokenizer_from_gguf(*file);
      }))
    exercise_tokenizer(*tok);
}

void fuzz_spm_model(const uint8_t* data, size_t size) {
  const std::string bytes(as_text(data, size));
  std::unique_ptr<Tokenizer> tok;
  // As tokenizer_from_hf_directory reads a tokenizer.model: kvlm's reader first, which
  // refuses what is not a model, then libsentencepiece.
  const bool ok = accepted([&] {
    const SpmModel model = parse_spm_model(bytes);
    if (model.pieces.empty()) throw std::runtime_error("no pieces");
    tok = std::make_unique<SpmTokenizer>(bytes, TokenizerSetup{});
  });
  if (ok) exercise_tokenizer(*tok);
}

// ---------------------------------------------------------------------------------------
// Tokenizers on arbitrary text and ids
// ---------------------------------------------------------------------------------------

namespace {

struct TestTokenizer {
  std::unique_ptr<Tokenizer> tok;
  // Byte-level BPE: encode without special tokens drops the bytes that have no token and
  // loses nothing else, so decoding gives the text back without them.
  bool lossless = false;
  std::array<bool, 256> has_byte{};
};

std::unique_ptr<gguf::File> open_test_gguf(const std::string& name) {
  return std::make_unique<gguf::File>("tests/data/hf/" + name);
}

// The byte-level vocabulary of a test GGUF with another pre-tokenizer, so all three
// splitting patterns meet the input.
std::unique_ptr<Tokenizer> bpe_with(const gguf::File& f, PreTokenizer pre) {
  BpeVocab vocab;
  vocab.tokens = f.get_strings("tokenizer.ggml.tokens");
  for (int64_t type : f.get_ints("tokenizer.ggml.token_type"))
    vocab.token_types.push_back(int32_t(type));
  vocab.merges = f.get_strings("tokenizer.ggml.merges");
  vocab.pre = pre;
  return std::make_unique<BpeTokenizer>(std::move(vocab));
}

// Loaded once; a missing test file is a setup error, not a finding.
const std::vector<TestTokenizer>& test_tokenizers() {
  static const std::vector<TestTokenizer> all = [] {
    std::vector<TestTokenizer> v;
    try {
      const auto bpe_gguf = open_test_gguf("llama3-gqa.gguf");
      v.push_back({tokenizer_from_hf_directory("tests/data/hf/llama3-gqa"), true, {}});
      v.push_back({bpe_with(*bpe_gguf, PreTokenizer::Gpt2), true, {}});
      v.push_back({bpe_with(*bpe_gguf, PreTokenizer::SmolLM), true, {}});
      v.push_back({tokenizer_from_hf_directory("tests/data/hf/llama2-spm"), false, {}});
      v.push_back({tokenizer_from_gguf(*open_test_gguf("llama2-spm.gguf")), false, {}});
    } catch (const std::exception& e) {
      throw std::logic_error(std::string("fuzz_tokenize needs tests/data (run from the "
                                         "repository root): ") +
                             e.what());
    }
    for (TestTokenizer& t : v)
      for (int b = 0; b < 256; ++b)
        t.has_byte[b] = !t.tok->encode(std::string(1, char(b)), false, false).empty();
    return v;
  }();
  return all;
}

bool valid_utf8(const std::string& text) {
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    if (c.status != unicode::Utf8Status::Valid) return false;
    pos += c.length;
  }
  return true;
}

void encode_text(const TestTokenizer& t, const std::string& text, bool special) {
  const Tokenizer& tok = *t.tok;
  const std::vector<int32_t> ids = tok.encode(text, special, special);
  for (int32_t id : ids)
    check(id >= 0 && id < tok.vocab_size(), "encode gave id " + std::to_string(id));
  const std::string decoded = tok.decode(ids);
  if (t.lossless && !special) {
    std::string expected;
    for (char c : text)
      if (t.has_byte[uint8_t(c)]) expected += c;
    check(decoded == expected, "decode(encode(text)) differs from the text");
  }
}

void decode_ids(const Tokenizer& tok, std::string_view bytes) {
  // Two bytes per id, spread over the vocabulary and a little beyond it on both sides.
  const int64_t n = tok.vocab_size();
  std::vector<int32_t> ids;
  bool out_of_range = false;
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    const int64_t raw = uint8_t(bytes[i]) | int64_t(uint8_t(bytes[i + 1])) << 8;
    ids.push_back(int32_t(raw % (n + 4) - 2));
    out_of_range |= ids.back() < 0 || ids.back() >= n;
  }
  try {
    tok.decode(ids);
    StreamDecoder stream(tok);
    std::string text;
    for (int32_t id : ids) text += stream.push(id);
    text += stream.flush();
    check(valid_utf8(text), "StreamDecoder gave invalid UTF-8");
    check(!out_of_range, "decode accepted an id outside the vocabulary");
  } catch (const std::out_of_range&) {
    check(out_of_range, "decode refused ids inside the vocabulary");
  }
}

}  // namespace

void fuzz_tokenize(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const std::vector<TestTokenizer>& all = test_tokenizers();
  const TestTokenizer& t = all[data[0] % all.size()];
  const std::string_view rest = as_text(data + 1, size - 1);
  switch (data[0] / all.size() % 3) {
    case 0:
      encode_text(t, std::string(rest), false);
      break;
    case 1:
      encode_text(t, std::string(rest), true);
      break;
    default:
      decode_ids(*t.tok, rest);
      break;
  }
}

// ---------------------------------------------------------------------------------------
// Command-line and report inputs
// ---------------------------------------------------------------------------------------

void fuzz_chat_template(const uint8_t* data, size_t size) {
  static const Tokenizer& tok = *test_tokenizers()[0].tok;  // Llama 3's <|begin_of_text|>
  const std::vector<std::string_view> parts = split_nul(data, size);
  const std::string jinja(parts[0]);
  const std::string override_name(parts.size() > 1 ? parts[1] : "");
  // Each further part is a message; its first byte picks the role, unknown ones included.
  static const char* const kRoles[] = {"system", "user", "assistant", "tool"};
  std::vector<ChatMessage> messages;
  for (size_t i = 2; i < parts.size() && messages.size() < 16; ++i) {
    const std::string_view p = parts[i];
    if (p.empty()) continue;
    messages.push_back({kRoles[uint8_t(p[0]) % 4], std::string(p.substr(1))});
  }
  std::unique_ptr<ChatTemplate> tmpl;
  if (!accepted([&] {
        tmpl = std::make_unique<ChatTemplate>(ChatTemplate::choose(jinja, override_name, tok));
      }))
    return;
  tmpl->name();
  for (bool generation : {false, true}) {
    std::string text;
    if (accepted([&] { text = tmpl->render(messages, generation); })) encode_chat(tok, text, true);
  }
  // next_turn cuts the shorter rendering off the longer one: it must be a prefix.
  std::string before, after;
  std::vector<ChatMessage> longer = messages;
  longer.push_back({"user", "next"});
  if (accepted([&] {
        before = tmpl->render(messages, false);
        after = tmpl->render(longer, true);
      })) {
    check(after.starts_with(before), "the rendering of a longer conversation does not extend it");
    tmpl->next_turn(messages, "next");
  }
}

void fuzz_kv_spec(const uint8_t* data, size_t size) {
  const std::string text(as_text(data, size));
  KVSpec spec;
  if (accepted([&] { spec = KVSpec::parse(text); })) {
    // text() writes what parse() reads, and a strategy's name() recreates it.
    std::string again;
    try {
      again = KVSpec::parse(spec.text()).text();
    } catch (const std::exception& e) {
      check(false, "parse(text()) threw: " + std::string(e.what()));
    }
    check(again == spec.text(), "parse(text()) gave " + again + ", not " + spec.text());
    for (const MethodSpec& part : spec.parts) find_method(part.name);
    std::unique_ptr<KVStrategy> strategy;
    if (accepted([&] { strategy = make_strategy(spec); })) {
      const std::string name = strategy->name();
      std::string rebuilt;
      try {
        rebuilt = make_strategy(name)->name();
      } catch (const std::exception& e) {
        check(false, "make_strategy(name() = " + name + ") threw: " + e.what());
      }
      check(rebuilt == name, "make_strategy(" + name + ") is called " + rebuilt);
      strategy->needs();
      strategy->report();
    }
  }
  accepted([&] {
    for (const KVSpec& s : parse_kv_list(text)) accepted([&] { make_strategy(s); });
  });
}

void fuzz_replot(const uint8_t* data, size_t size) {
  nlohmann::json doc;
  if (!accepted([&] { doc = parse_json(as_text(data, size), "fuzz.json"); })) return;
  for (const char* command : {"passkey", "needle", "sweep"}) {
    SavedReport r;
    if (!accepted([&] { r = report_from_json(doc, command, "fuzz.json"); })) continue;
    // What show_results draws for the command, and the files it can write.
    if (std::string_view(command) == "sweep") {
      sweep_text(r.cells, r.grid, true);
      line_chart_svg(r.cells, r.grid, r.title);
    } else {
      heatmap_text(r.cells, true);
      heatmap_svg(r.cells, r.title);
    }
    cells_csv(r.cells, r.grid);
  }
}

const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"gguf", fuzz_gguf, 16 << 10},
      {"safetensors", fuzz_safetensors, 16 << 10},
      {"safetensors_index", fuzz_safetensors_index, 16 << 10},
      {"hf_config", fuzz_hf_config, 16 << 10},
      {"tokenizer_json", fuzz_tokenizer_json, 64 << 10},
      {"gguf_tokenizer", fuzz_gguf_tokenizer, 32 << 10},
      {"spm_model", fuzz_spm_model, 16 << 10},
      {"tokenize", fuzz_tokenize, 4 << 10},
      {"chat_template", fuzz_chat_template, 16 << 10},
      {"kv_spec", fuzz_kv_spec, 1 << 10},
      {"replot", fuzz_replot, 64 << 10},
  };
  return all;
}

}  // namespace kvlm::fuzz
