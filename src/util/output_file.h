// Files the user asked for (--json, --csv, --svg): checked before any work starts, and
// written whole or not at all, so a failed or interrupted run leaves no partial output.
#pragma once
#include <string>

namespace kvlm {

// Throws std::runtime_error "<flag> <path>: cannot write there" when `path` cannot be
// created; an empty path (the flag not given) passes.
void check_output_path(const std::string& path, const std::string& flag);

// Writes `content` to path + ".partial", then renames it over `path`. Throws
// std::runtime_error naming the flag and the path, leaving neither file behind.
void write_output(const std::string& path, const std::string& content, const std::string& flag);

}  // namespace kvlm
