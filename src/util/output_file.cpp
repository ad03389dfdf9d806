#include "util/output_file.h"

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace kvlm {

void check_output_path(const std::string& path, const std::string& flag) {
  if (path.empty()) return;
  const std::string tmp = path + ".partial";
  const bool ok = bool(std::ofstream(tmp));
  std::remove(tmp.c_str());
  if (!ok) throw std::runtime_error(flag + " " + path + ": cannot write there");
}

void write_output(const std::string& path, const std::string& content, const std::string& flag) {
  const std::string tmp = path + ".partial";
  std::ofstream out(tmp, std::ios::binary);
  out << content;
  out.close();
  if (!out || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw std::runtime_error(flag + " " + path + ": cannot write the file");
  }
}

}  // namespace kvlm
