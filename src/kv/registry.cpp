// --kv spec parsing and the table of known methods.
#include <sstream>
#include <stdexcept>

#include "kv/strategies/strategies.h"

namespace kvlm {

namespace {

struct Method {
  MethodInfo (*info)();
  std::unique_ptr<KVStrategy> (*make)(const Params&);
};

const std::vector<Method>& methods() {
  static const std::vector<Method> table = {
      {full_method_info, make_full},
  };
  return table;
}

std::string join(const std::vector<std::string>& items) {
  std::string s;
  for (const std::string& item : items) s += (s.empty() ? "" : ", ") + item;
  return s;
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
  if (it == values.end()) return fallback;
  size_t used = 0;
  long v = 0;
  try {
    v = std::stol(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != it->second.size() || v < min_value || v > 1 << 30)
    throw std::invalid_argument("--kv: " + key + "=" + it->second + " is not an integer >= " +
                                std::to_string(min_value));
  return int(v);
}

double Params::get_double(const std::string& key, double fallback, double min_value,
                          double max_value) const {
  auto it = values.find(key);
  if (it == values.end()) return fallback;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(it->second, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != it->second.size() || !(v >= min_value && v <= max_value)) {
    std::ostringstream msg;
    msg << "--kv: " << key << "=" << it->second << " is not a number in [" << min_value << ", "
        << max_value << "]";
    throw std::invalid_argument(msg.str());
  }
  return v;
}

std::unique_ptr<KVStrategy> make_strategy(const std::string& spec) {
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

const std::vector<MethodInfo>& known_methods() {
  static const std::vector<MethodInfo> infos = [] {
    std::vector<MethodInfo> v;
    for (const Method& m : methods()) v.push_back(m.info());
    return v;
  }();
  return infos;
}

}  // namespace kvlm
