// JSON read from model files (safetensors headers, config.json, index files): malformed
// text, nesting deeper than any real file has, and oversized files become a
// std::runtime_error naming the source, never a crash or a runaway allocation.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace kvlm {

nlohmann::json parse_json(std::string_view text, const std::string& source);
nlohmann::json read_json_file(const std::string& path);  // files of at most 64 MiB

// Human wording of a JSON value's type for error messages: "a string", "null", ...
std::string json_type_name(const nlohmann::json& value);

}  // namespace kvlm
