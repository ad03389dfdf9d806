#include "model/json_file.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kvlm {

namespace {

constexpr int kMaxDepth = 64;                  // config files nest 3 deep, headers 3
constexpr std::streamoff kMaxFileBytes = 64 << 20;

}  // namespace

nlohmann::json parse_json(std::string_view text, const std::string& source) {
  // nlohmann's parser is iterative, but a hostile "[[[[..." still builds a deep value;
  // the callback sees the depth as it parses and stops it early.
  auto limit_depth = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    if (depth > kMaxDepth)
      throw std::runtime_error(source + ": JSON nested more than " + std::to_string(kMaxDepth) +
                               " levels deep");
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit_depth);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(source + ": not valid JSON (" + e.what() + ")");
  }
}

nlohmann::json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw std::runtime_error(path + ": cannot read");
  const std::streamoff size = in.tellg();
  if (size > kMaxFileBytes)
    throw std::runtime_error(path + ": " + std::to_string(size) + " bytes is too large for a " +
                             "JSON file of a model (limit " + std::to_string(kMaxFileBytes) + ")");
  in.seekg(0);
  std::stringstream text;
  text << in.rdbuf();
  return parse_json(text.str(), path);
}

std::string json_type_name(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::object: return "an object";
    case nlohmann::json::value_t::array: return "an array";
    case nlohmann::json::value_t::string: return "a string";
    case nlohmann::json::value_t::boolean: return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "an integer";
    case nlohmann::json::value_t::number_float: return "a fractional number";
    default: return "an unusual value";
  }
}

}  // namespace kvlm
