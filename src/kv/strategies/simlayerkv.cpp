// simlayerkv: SimLayerKV. Some layers, for a given input, put nearly all their attention on
// the first few tokens and the most recent ones ("lazy" layers); their middle KV is not
// used. A lazy layer keeps only sinks + recent tokens (StreamingLLM for that layer); the
// other layers keep everything, so the compression is an outcome, not a budget.
//   Detect: mean over all query heads of the layer of the probe queries' attention on the
//   slots [0, sinks) U last `recent`; the layer is lazy when that mass exceeds delta.
//   Prefill (detect=prefill): probe = the last `probe` prompt queries, averaged.
//   Decode (detect=decode): probe = the first token generated after a prompt.
//   A lazy layer keeps [0, sinks) U the last `recent` slots, also while decoding (cut back
//   when a head exceeds sinks + recent + slack rows).
// Paper: SimLayerKV: A Simple Framework for Layer-Level KV Cache Reduction
// (arXiv 2410.13846); official code github.com/sail-sg/SimLayerKV (LongBench/).
// kvlm's choices, from the official code (the reasons, and the worked examples the tests
// check: simlayerkv.md):
//  - delta: the official threshold of the model's family when the spec gives none, read
//    from the model's name (LLaMA-3 0.9, LLaMA-2 0.65, Mistral 0.8, Qwen 0.85), else from
//    its shape (LLaMA-3's 128256-token vocabulary; LLaMA-2's 32000 tokens without GQA);
//    other models (SmolLM2) have no official value and get LLaMA-3's 0.9, the official
//    default, being Llama-style GQA models too. --stats says which and why.
//  - probe=32: its prefill detection averages the last 32 queries. (Its active default is
//    decode detection; the spec makes prefill the default here, decode is detect=decode.)
//  - sinks=4, recent=1024 as it keeps; recent=r with 0 < r <= 1 means ceil(r * prompt
//    length), for short prompts. Its prefill detection measures each probe query's own
//    last 512 tokens while keeping 1024; kvlm by default measures and keeps the same
//    slots, the last `recent` of the layer (over the probe queries' averaged rows), and
//    counts a slot once where sinks and recent overlap; window=512,self=0 (below) is the
//    official measure.
//    Keep probe well below recent (official: 32 vs 1024): the neighbours of earlier probe
//    queries otherwise fall outside the window and layers look less lazy than they are.
//  - The official code only trims lazy layers once; kvlm keeps them at sinks + recent while
//    decoding, as the spec asks, and a layer stays lazy for the rest of the conversation
//    (its middle tokens are gone). A chat turn's prefill can find more lazy layers.
//  - window=512,self=0 is the official prefill variant: each probe query's mass on the
//    sinks and its own previous 512 tokens, itself left out (the observer keeps the probe
//    rows apart for it). The default (window=0) measures the layer's last `recent` slots
//    over the averaged rows, which is cheaper (one scoring pass instead of `probe`).
//  - detect=decode asks for decode attention only until the step that detects (the
//    observer reads needs() on every call), so later steps cost nothing extra.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <stdexcept>
#include <tuple>

#include "kv/eviction.h"
#include "kv/strategies/strategies.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

constexpr double kDefaultDelta = 0.9;  // official threshold for LLaMA3-8B, its default

// The official threshold of a model's family, and why it applies.
std::pair<double, std::string> family_delta(const ModelConfig& c) {
  struct Family {
    const char* name;
    std::vector<const char*> in_name;
    double delta;
  };
  static const std::vector<Family> kFamilies = {{"LLaMA-3", {"llama-3", "llama3", "llama 3"}, 0.9},
                                                {"LLaMA-2", {"llama-2", "llama2", "llama 2"}, 0.65},
                                                {"Mistral", {"mistral", "mixtral"}, 0.8},
                                                {"Qwen", {"qwen"}, 0.85}};
  std::string name = c.name;
  for (char& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  for (const Family& f : kFamilies)
    for (const char* word : f.in_name)
      if (name.find(word) != std::string::npos)
        return {f.delta, std::string(f.name) + "'s official value: the model is named \"" + c.name + "\""};
  if (c.vocab_size == 128256) return {0.9, "LLaMA-3's official value: its 128256-token vocabulary"};
  if (c.vocab_size == 32000 && c.n_kv_heads == c.n_heads)
    return {0.65, "LLaMA-2's official value: a 32000-token vocabulary without GQA"};
  return {kDefaultDelta, "no official value for this model; LLaMA-3's, the official default, "
                         "for a Llama-style GQA model"};
}
constexpr int kDefaultSinks = 4;
constexpr int kDefaultRecent = 1024;
constexpr int kDefaultProbe = 32;
constexpr int kDefaultSlack = 0;

class SimLayerKVStrategy final : public CopyableStrategy<SimLayerKVStrategy> {
 public:
  SimLayerKVStrategy(std::optional<double> delta, int sinks, Budget recent, int probe,
                     bool detect_at_decode, int window, bool self, int slack)
      : delta_(delta.value_or(kDefaultDelta)),
        delta_source_(delta ? "given" : "the official default, LLaMA-3's"), delta_given_(delta.has_value()),
        sinks_(sinks), spec_recent_(recent), probe_(probe),
        detect_at_decode_(detect_at_decode), window_(window), self_(self), slack_(slack) {}

  std::string name() const override {
    return "simlayerkv:delta=" + format_number(delta_) + ",sinks=" + std::to_string(sinks_) +
           ",recent=" + spec_recent_.value() +
           (detect_at_decode_ ? ",detect=decode" : ",probe=" + std::to_string(probe_) + ",detect=prefill") +
           (window_ > 0 ? ",window=" + std::to_string(window_) + ",self=" + (self_ ? "1" : "0") : "") +
           ",slack=" + std::to_string(slack_);
  }

  Needs needs() const override {
    Needs n;
    if (!detect_at_decode_) n.window = probe_, n.window_rows = window_ > 0;
    else n.decode_attention = detect_pending_ || lazy_.empty();  // not detected yet
    return n;
  }

  void set_model(const ModelConfig& c) override {
    if (!delta_given_) std::tie(delta_, delta_source_) = family_delta(c);
  }

  // A fresh prompt: no layer is lazy yet, and the recent window is fixed for it.
  void begin_sequence(const KVCache& cache, int prompt_tokens) override {
    lazy_.assign(cache.n_layers(), false);
    recent_ = spec_recent_.resolve(prompt_tokens);
    detect_pending_ = detect_at_decode_;
  }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    if (detect_at_decode_) detect_pending_ = true;
    else if ((window_ > 0 ? per_query_mass(obs.window_rows) : lazy_mass(obs.window_attention)) > delta_)
      lazy_[obs.layer] = true;
    if (lazy_[obs.layer]) cut_layer(cache, obs.layer, 0);
  }

  bool compresses_while_decoding() const override { return true; }

  void on_decode_step(KVCache& cache, const DecodeObservation& obs) override {
    if (detect_pending_ && int(obs.attention.size()) == cache.n_layers()) {
      for (int l = 0; l < cache.n_layers(); l++)
        if (!lazy_[l] && lazy_mass(obs.attention[l]) > delta_) {
          lazy_[l] = true;
          cut_layer(cache, l, 0);
        }
      detect_pending_ = false;
    }
    for (int l = 0; l < cache.n_layers(); l++)
      if (lazy_[l]) cut_layer(cache, l, slack_);
  }

  std::string layer_note(int layer) const override {
    return layer < int(lazy_.size()) && lazy_[layer] ? "lazy" : "";
  }

  std::string report() const override {
    const std::string threshold =
        "simlayerkv: delta " + format_number(delta_) + " (" + delta_source_ + ")\n";
    if (lazy_.empty()) return threshold;
    std::string layers;
    int count = 0;
    for (size_t l = 0; l < lazy_.size(); l++)
      if (lazy_[l]) layers += (count++ ? ", " : "") + std::to_string(l);
    return threshold + "simlayerkv: lazy layers " + (count ? layers : "none") + " (" +
           std::to_string(count) + " of " + std::to_string(lazy_.size()) + ")\n";
  }

 private:
  // Attention mass on the sinks and the recent window, averaged over the query heads. Each
  // row covers the slots of its head's KV head.
  double lazy_mass(const std::vector<std::vector<float>>& per_query_head) const {
    if (per_query_head.empty())
      throw std::logic_error("simlayerkv: no probe attention observed");
    double mass = 0;
    for (const std::vector<float>& row : per_query_head)
      for (int32_t j : sinks_and_recent(int(row.size()), sinks_, recent_)) mass += row[j];
    return mass / double(per_query_head.size());
  }

  // The official prefill variant: each probe query's mass on the sinks and on its own
  // previous `window` slots (its own slot too when self_), averaged over the probe
  // queries and the query heads. rows[i][h]: query i of the probe, slot len - probes + i.
  double per_query_mass(const std::vector<std::vector<std::vector<float>>>& rows) const {
    if (rows.empty()) throw std::logic_error("simlayerkv: no probe attention observed");
    const int probes = int(rows.size());
    double mass = 0;
    size_t n = 0;
    for (int i = 0; i < probes; i++)
      for (const std::vector<float>& row : rows[i]) {
        const int own = int(row.size()) - probes + i, from = std::max(0, own - window_);
        for (int j = 0; j < own + (self_ ? 1 : 0); j++)
          if (j < sinks_ || j >= from) mass += row[j];
        n++;
      }
    return mass / double(n);
  }

  void cut_layer(KVCache& cache, int layer, int slack) const {
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      const int len = cache.length(layer, h);
      if (over_budget(len, sinks_ + recent_, slack))
        cache.compact(layer, h, sinks_and_recent(len, sinks_, recent_));
    }
  }

  double delta_;
  std::string delta_source_;  // why delta_ has its value, for --stats
  bool delta_given_;
  int sinks_;
  Budget spec_recent_;  // a count, or a share of the prompt
  int probe_;
  bool detect_at_decode_;
  int window_;  // > 0: each probe query's own previous `window` slots (official prefill variant)
  bool self_;   // with window_: the query's own slot counts
  int slack_;
  int recent_ = 0;                // recent window for the current conversation
  std::vector<bool> lazy_;        // per layer; empty before the first prompt
  bool detect_pending_ = false;   // detect=decode: the next decode step decides
};

}  // namespace

MethodInfo simlayerkv_method_info() {
  return {"simlayerkv",
          "detect lazy layers (attention on sinks + recent > delta) and keep only sinks + recent there",
          {{"delta", "the model family's (LLaMA-3 0.9, LLaMA-2 0.65, Mistral 0.8, Qwen 0.85; others 0.9)"},
           {"sinks", std::to_string(kDefaultSinks)},
           {"recent", std::to_string(kDefaultRecent) + " (or a share of the prompt, e.g. 0.25)"},
           {"probe", std::to_string(kDefaultProbe)},
           {"detect", "prefill (or decode)"},
           {"window", "0 (the layer's last `recent` slots; N: each probe query's own previous N)"},
           {"self", "1 (with window=N: 0 leaves the query's own slot out)"},
           {"slack", std::to_string(kDefaultSlack)}},
          "SimLayerKV: A Simple Framework for Layer-Level KV Cache Reduction (arXiv 2410.13846)",
          {.observes = true, .cache_positions = true}};
}

std::unique_ptr<KVStrategy> make_simlayerkv(const Params& params) {
  params.reject_unknown("simlayerkv",
                        {"delta", "sinks", "recent", "probe", "detect", "window", "self", "slack"});
  std::optional<double> delta;
  if (params.values.count("delta")) delta = params.get_double("delta", kDefaultDelta, 0.0, 1.0);
  const int sinks = params.get_int("sinks", kDefaultSinks, 0);
  const Budget recent = read_count_or_share(params, "recent", kDefaultRecent);
  const int probe = params.get_int("probe", kDefaultProbe, 1);
  const bool detect_at_decode = params.get_choice("detect", {"prefill", "decode"}) == "decode";
  if (detect_at_decode && params.values.count("probe"))
    throw std::invalid_argument("--kv simlayerkv: probe= applies only with detect=prefill "
                                "(detect=decode probes with the first generated token)");
  const int window = params.get_int("window", 0, 0);
  const bool self = params.get_choice("self", {"1", "0"}) == "1";
  if ((window > 0 || params.values.count("self")) && detect_at_decode)
    throw std::invalid_argument("--kv simlayerkv: window= and self= apply only with detect=prefill");
  if (params.values.count("self") && window == 0)
    throw std::invalid_argument("--kv simlayerkv: self= needs window=N (each probe query's own "
                                "previous N tokens, e.g. window=512,self=0 as the official code)");
  const int slack = params.get_int("slack", kDefaultSlack, 0);
  return std::make_unique<SimLayerKVStrategy>(delta, sinks, recent, probe, detect_at_decode,
                                              window, self, slack);
}

}  // namespace kvlm
