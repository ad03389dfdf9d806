// The table of known methods, typed parameters, and composition ("a+b").
#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "kv/strategies/strategies.h"
#include "util/parse_number.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

struct Method {
  MethodInfo (*info)();
  std::unique_ptr<KVStrategy> (*make)(const Params&);
};

const std::vector<Method>& methods() {
  static const std::vector<Method> table = {
      {full_method_info, make_full},
      {streaming_method_info, make_streaming},
      {h2o_method_info, make_h2o},
      {snapkv_method_info, make_snapkv},
      {pyramidkv_method_info, make_pyramidkv},
      {adakv_method_info, make_adakv},
      {dynamickv_method_info, make_dynamickv},
      {simlayerkv_method_info, make_simlayerkv},
      {knorm_method_info, make_knorm},
      {minicache_method_info, make_minicache},
  };
  return table;
}

template <class T>
T parse_number(const std::string& key, const std::string& text, T min_value, T max_value) {
  const std::optional<double> parsed = parse_finite(text);
  const double v = parsed.value_or(0);
  const bool integral = std::is_integral_v<T>;
  if (!parsed || !(v >= min_value && v <= max_value) || (integral && v != std::floor(v))) {
    std::ostringstream msg;
    msg << "--kv: " << key << "=" << text << " is not " << (integral ? "an integer" : "a number")
        << " in [" << min_value << ", " << max_value << "]";
    throw std::invalid_argument(msg.str());
  }
  return T(v);
}

// A part of a spec made into a strategy, with its pos= when its method takes one.
struct Part {
  std::unique_ptr<KVStrategy> strategy;
  std::optional<KVPositions> positions;
};

// Applies one or several methods in order (e.g. token eviction, then cross-layer merging)
// and carries the parts' pos= (the spec's name shows it wherever a method takes it).
class Composite final : public KVStrategy {
 public:
  explicit Composite(std::vector<Part> parts) : parts_(std::move(parts)) {}
  std::string name() const override {
    return join(parts_, "+", [](const Part& p) {
      std::string part = p.strategy->name();
      if (p.positions)
        part += std::string(part.find(':') == std::string::npos ? ":" : ",") + "pos=" +
                (*p.positions == KVPositions::Cache ? "cache" : "original");
      return part;
    });
  }
  KVPositions position_mode() const override {
    for (const Part& p : parts_)
      if (p.positions == KVPositions::Cache) return KVPositions::Cache;
    return KVPositions::Original;
  }
  Needs needs() const override {
    Needs n;
    for (const Part& p : parts_) {
      Needs m = p.strategy->needs();
      n.window = std::max(n.window, m.window);
      n.window_rows |= m.window_rows;
      n.all_queries |= m.all_queries;
      n.key_norms |= m.key_norms;
      n.decode_attention |= m.decode_attention;
      n.decode_key_norms |= m.decode_key_norms;
    }
    return n;
  }
  void begin_sequence(const KVCache& c, int prompt_tokens) override {
    for (const Part& p : parts_) p.strategy->begin_sequence(c, prompt_tokens);
  }
  void on_prefill_layer(KVCache& c, const Observation& o) override {
    for (const Part& p : parts_) p.strategy->on_prefill_layer(c, o);
  }
  void after_prefill(KVCache& c) override {
    for (const Part& p : parts_) p.strategy->after_prefill(c);
  }
  void on_decode_step(KVCache& c, const DecodeObservation& o) override {
    for (const Part& p : parts_) p.strategy->on_decode_step(c, o);
  }
  bool compresses_while_decoding() const override {
    for (const Part& p : parts_)
      if (p.strategy->compresses_while_decoding()) return true;
    return false;
  }
  void set_model(const ModelConfig& c) override {
    for (const Part& p : parts_) p.strategy->set_model(c);
  }
  std::string report() const override {
    std::string s;
    for (const Part& p : parts_) s += p.strategy->report();
    return s;
  }
  std::unique_ptr<KVStrategy> clone() const override {
    std::vector<Part> parts;
    for (const Part& p : parts_) parts.push_back({p.strategy->clone(), p.positions});
    return std::make_unique<Composite>(std::move(parts));
  }
  std::string layer_note(int layer) const override {
    std::vector<std::string> notes;
    for (const Part& p : parts_)
      if (std::string note = p.strategy->layer_note(layer); !note.empty()) notes.push_back(note);
    return join(notes, ", ");
  }

 private:
  std::vector<Part> parts_;
};

std::string methods_taking_positions() {
  std::vector<std::string> names;
  for (const Method& m : methods())
    if (m.info().traits.cache_positions) names.push_back(m.info().name);
  return join(names, ", ");
}

Part make_one(const MethodSpec& spec) {
  const Method* method = nullptr;
  std::vector<std::string> names;
  for (const Method& m : methods()) {
    names.push_back(m.info().name);
    if (names.back() == spec.name) method = &m;
  }
  if (!method)
    throw std::invalid_argument("--kv: unknown method '" + spec.name + "' (available: " +
                                join(names, ", ") + "; see `kvlm methods`)");
  Params params;
  for (const auto& [key, value] : spec.params) params.values.emplace(key, value);
  const MethodTraits traits = method->info().traits;
  Part part;
  if (traits.cache_positions) {
    const bool cache = params.get_choice("pos", traits.cache_positions_by_default
                                                    ? std::vector<std::string>{"cache", "original"}
                                                    : std::vector<std::string>{"original", "cache"}) == "cache";
    part.positions = cache ? KVPositions::Cache : KVPositions::Original;
    params.values.erase("pos");
  } else if (params.values.count("pos")) {
    throw std::invalid_argument("--kv " + spec.name + ": pos= is not one of its parameters: "
                                "positions inside the cache need a method that evicts and keeps "
                                "equally many tokens in every head of a layer (" +
                                methods_taking_positions() + ")");
  }
  part.strategy = method->make(params);
  return part;
}

}  // namespace

void Params::reject_unknown(const std::string& method,
                            const std::vector<std::string>& allowed) const {
  for (const auto& [key, value] : values) {
    bool ok = false;
    for (const std::string& a : allowed) ok = ok || a == key;
    if (!ok)
      throw std::invalid_argument("--kv " + method + ": unknown parameter '" + key + "'" +
                                  (allowed.empty() ? " (" + method + " takes no parameters)"
                                                   : " (valid: " + join(allowed, ", ") + ")"));
  }
}

int Params::get_int(const std::string& key, int fallback, int min_value) const {
  auto it = values.find(key);
  return it == values.end() ? fallback : parse_number<int>(key, it->second, min_value, 1 << 30);
}

double Params::get_double(const std::string& key, double fallback, double min_value,
                          double max_value) const {
  auto it = values.find(key);
  return it == values.end() ? fallback : parse_number<double>(key, it->second, min_value, max_value);
}

std::string Params::get_choice(const std::string& key, const std::vector<std::string>& choices) const {
  auto it = values.find(key);
  if (it == values.end()) return choices.front();
  for (const std::string& c : choices)
    if (c == it->second) return c;
  throw std::invalid_argument("--kv: " + key + "=" + it->second +
                              " (valid: " + join(choices, ", ") + ")");
}

int Budget::resolve(int n_tokens) const {
  return ratio > 0 ? int(std::ceil(ratio * n_tokens - 1e-9)) : tokens;
}

std::string Budget::spec() const { return (ratio > 0 ? "ratio=" : "budget=") + value(); }

std::string Budget::value() const {
  return ratio > 0 ? format_number(ratio) : std::to_string(tokens);
}

Budget read_budget(const Params& p, int fallback_tokens, int min_tokens) {
  if (p.values.count("budget") && p.values.count("ratio"))
    throw std::invalid_argument("--kv: give budget= or ratio=, not both");
  Budget b;
  if (p.values.count("ratio")) b.ratio = p.get_double("ratio", 0, 1e-6, 1.0);
  else b.tokens = p.get_int("budget", fallback_tokens, min_tokens);
  return b;
}

Budget read_count_or_share(const Params& p, const std::string& key, int fallback_tokens) {
  Budget b;
  auto it = p.values.find(key);
  if (it != p.values.end() && it->second.find_first_of(".eE") != std::string::npos)
    b.ratio = p.get_double(key, 0, 1e-6, 1.0);
  else
    b.tokens = p.get_int(key, fallback_tokens, 1);
  return b;
}

std::unique_ptr<KVStrategy> make_strategy(const KVSpec& spec) {
  std::vector<Part> parts;
  for (const MethodSpec& part : spec.parts) parts.push_back(make_one(part));

  // Observations are computed once per layer, before any part runs: the one part that
  // uses them must come first, or it would read scores of slots another part evicted.
  const std::string where = "--kv " + spec.text() + ": ";
  int observers = 0;
  for (size_t i = 0; i < spec.parts.size(); i++) {
    const MethodTraits& t = find_method(spec.parts[i].name)->traits;
    if (!t.observes) continue;
    if (++observers > 1)
      throw std::invalid_argument(where + "only one method of a composition may use attention "
                                  "scores or key norms, and " + spec.parts[i].name +
                                  " is the second (e.g. snapkv:budget=128+minicache)");
    if (i > 0)
      throw std::invalid_argument(where + "put the method that uses attention scores or key "
                                  "norms first (" + parts[i].strategy->name() + ")");
  }
  // Merging shares what the others kept, so it goes last; and it cannot follow a method
  // that keeps evicting while decoding, which would have to evict inside shared storage.
  for (size_t i = 0; i < spec.parts.size(); i++) {
    if (!find_method(spec.parts[i].name)->traits.merges_layers) continue;
    if (i + 1 != spec.parts.size())
      throw std::invalid_argument(where + spec.parts[i].name + " merges what the others kept, "
                                  "so it goes last (e.g. snapkv:budget=128+minicache)");
    for (size_t j = 0; j < i; j++)
      if (parts[j].strategy->compresses_while_decoding())
        throw std::invalid_argument(where + spec.parts[i].name + " composes with prefill-time "
                                    "methods (snapkv, pyramidkv, adakv, dynamickv), not with " +
                                    spec.parts[j].name + ", which evicts while decoding");
  }
  // One position per layer's queries needs equal lengths across its heads from every part.
  const bool cache_positions = std::any_of(parts.begin(), parts.end(), [](const Part& p) {
    return p.positions == KVPositions::Cache;
  });
  for (const MethodSpec& part : spec.parts)
    if (cache_positions && !find_method(part.name)->traits.cache_positions)
      throw std::invalid_argument(where + "pos=cache cannot compose with " + part.name +
                                  " (it takes no pos=; those that do: " +
                                  methods_taking_positions() + ")");
  return std::make_unique<Composite>(std::move(parts));
}

std::unique_ptr<KVStrategy> make_strategy(const std::string& spec) {
  return make_strategy(KVSpec::parse(spec));
}

const MethodInfo* find_method(const std::string& name) {
  for (const MethodInfo& info : known_methods())
    if (info.name == name) return &info;
  return nullptr;
}

const std::vector<MethodInfo>& known_methods() {
  static const std::vector<MethodInfo> infos = [] {
    std::vector<MethodInfo> v;
    for (const Method& m : methods()) {
      v.push_back(m.info());
      const MethodTraits& t = v.back().traits;
      if (t.cache_positions)
        v.back().params.push_back({"pos", t.cache_positions_by_default ? "cache" : "original"});
    }
    return v;
  }();
  return infos;
}

}  // namespace kvlm
