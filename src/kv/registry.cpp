// --kv spec parsing, the table of known methods, and composition ("a+b").
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "kv/strategies/strategies.h"
#include "parse_number.h"

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

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& item : items) s += (s.empty() ? "" : ", ") + item;
  return s;
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

// Applies several methods in order (e.g. token eviction, then cross-layer merging).
class Composite final : public KVStrategy {
 public:
  explicit Composite(std::vector<std::unique_ptr<KVStrategy>> parts) : parts_(std::move(parts)) {}
  std::string name() const override {
    std::string s = parts_.front()->name();
    for (size_t i = 1; i < parts_.size(); i++) s.append(1, '+').append(parts_[i]->name());
    return s;
  }
  Needs needs() const override {
    Needs n;
    for (const auto& p : parts_) {
      Needs m = p->needs();
      n.window = std::max(n.window, m.window);
      n.all_queries |= m.all_queries;
      n.key_norms |= m.key_norms;
      n.decode_attention |= m.decode_attention;
    }
    return n;
  }
  void on_prefill_layer(KVCache& c, const Observation& o) override {
    for (const auto& p : parts_) p->on_prefill_layer(c, o);
  }
  void after_prefill(KVCache& c) override {
    for (const auto& p : parts_) p->after_prefill(c);
  }
  void on_decode_step(KVCache& c, const DecodeObservation& o) override {
    for (const auto& p : parts_) p->on_decode_step(c, o);
  }
  std::string report() const override {
    std::string s;
    for (const auto& p : parts_) s += p->report();
    return s;
  }

 private:
  std::vector<std::unique_ptr<KVStrategy>> parts_;
};

// Observations are computed once per layer for everyone: an observation that one part
// asked for and another part's eviction made stale would be wrong, so only one part
// of a composition may use them.
bool uses_observations(const Needs& n) {
  return n.window > 0 || n.all_queries || n.key_norms || n.decode_attention;
}

std::unique_ptr<KVStrategy> make_one(const std::string& spec) {
  std::string name = spec.substr(0, spec.find(':'));
  Params params;
  if (name.size() < spec.size()) {
    std::stringstream rest(spec.substr(name.size() + 1));
    std::string item;
    while (std::getline(rest, item, ',')) {
      size_t eq = item.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
        throw std::invalid_argument("--kv " + spec + ": '" + item + "' is not key=value");
      if (!params.values.emplace(item.substr(0, eq), item.substr(eq + 1)).second)
        throw std::invalid_argument("--kv " + spec + ": '" + item.substr(0, eq) +
                                    "' is given twice");
    }
  }
  std::vector<std::string> names;
  for (const Method& m : methods()) {
    if (m.info().name == name) return m.make(params);
    names.push_back(m.info().name);
  }
  throw std::invalid_argument("--kv: unknown method '" + name + "' (available: " + join(names) +
                              "; see `kvlm methods`)");
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
                                                   : " (valid: " + join(allowed) + ")"));
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
  throw std::invalid_argument("--kv: " + key + "=" + it->second + " (valid: " + join(choices) + ")");
}

int Budget::resolve(int n_tokens) const {
  return ratio > 0 ? int(std::ceil(ratio * n_tokens - 1e-9)) : tokens;
}

std::string Budget::spec() const {
  if (ratio > 0) {
    std::ostringstream s;
    s << "ratio=" << ratio;
    return s.str();
  }
  return "budget=" + std::to_string(tokens);
}

Budget read_budget(const Params& p, int fallback_tokens, int min_tokens) {
  if (p.values.count("budget") && p.values.count("ratio"))
    throw std::invalid_argument("--kv: give budget= or ratio=, not both");
  Budget b;
  if (p.values.count("ratio")) b.ratio = p.get_double("ratio", 0, 1e-6, 1.0);
  else b.tokens = p.get_int("budget", fallback_tokens, min_tokens);
  return b;
}

std::unique_ptr<KVStrategy> make_strategy(const std::string& spec) {
  std::vector<std::unique_ptr<KVStrategy>> parts;
  std::stringstream ss(spec);
  for (std::string part; std::getline(ss, part, '+');) parts.push_back(make_one(part));
  if (parts.empty()) throw std::invalid_argument("--kv: empty method spec");
  if (parts.size() == 1) return std::move(parts.front());
  int observers = 0;
  for (const auto& p : parts) observers += uses_observations(p->needs());
  if (observers > 1)
    throw std::invalid_argument("--kv " + spec + ": only one method of a composition may use "
                                "attention scores or key norms (e.g. snapkv:budget=128+minicache)");
  // Observations are computed before any part runs: the observer must act before another
  // part evicts, or it would read scores of slots that are gone.
  for (size_t i = 1; i < parts.size(); i++)
    if (uses_observations(parts[i]->needs()))
      throw std::invalid_argument("--kv " + spec + ": put the method that uses attention "
                                  "scores or key norms first (" + parts[i]->name() + ")");
  if (spec.find("minicache") != std::string::npos &&
      parts.back()->name().rfind("minicache", 0) != 0)
    throw std::invalid_argument("--kv " + spec + ": minicache merges what the others kept, so "
                                "it goes last (e.g. snapkv:budget=128+minicache)");
  // Merged layers cannot follow a method that keeps evicting while decoding: it would
  // have to evict inside the shared storage. Prefill-time selection composes cleanly.
  const bool merges = spec.find("minicache") != std::string::npos;
  for (const char* decode_evictor : {"streaming", "h2o", "knorm", "simlayerkv"})
    if (merges && spec.find(decode_evictor) != std::string::npos)
      throw std::invalid_argument("--kv " + spec + ": minicache composes with prefill-time "
                                  "methods (snapkv, pyramidkv, adakv, dynamickv), not with " +
                                  decode_evictor + ", which evicts while decoding");
  return std::make_unique<Composite>(std::move(parts));
}

std::vector<std::string> split_kv_list(const std::string& list) {
  std::vector<std::string> specs;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) {
    const std::string head = item.substr(0, item.find('+'));  // up to a composition
    const bool continues = !specs.empty() && head.find('=') != std::string::npos &&
                           head.find(':') == std::string::npos;
    if (continues) specs.back() += "," + item;
    else if (!item.empty()) specs.push_back(item);
  }
  return specs;
}

const std::vector<MethodInfo>& known_methods() {
  static const std::vector<MethodInfo> infos = [] {
    std::vector<MethodInfo> v;
    for (const Method& m : methods()) v.push_back(m.info());
    return v;
  }();
  return infos;
}

}  // namespace kvlm
