#include "model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <stdexcept>

#include "model/json_file.h"

namespace kvlm::safetensors {
namespace {

static_assert(std::endian::native == std::endian::little,
              "kvlm reads safetensors on little-endian hosts only");

// Real headers are a few hundred KiB even for 400-tensor shards; anything near this is
// not a model file, and refusing it early bounds what a hostile header can make us parse.
constexpr uint64_t kMaxHeaderBytes = 100 << 20;
constexpr size_t kMaxRank = 8;  // Llama weights are matrices; 8 leaves room for anything sane

// Every dtype the format defines, so an unsupported file says what it holds.
struct DTypeInfo {
  const char* name;
  uint64_t bytes;
  bool supported;
  gguf::TensorType type;  // meaningful when supported
};
constexpr DTypeInfo kDTypes[] = {
    {"F32", 4, true, gguf::TensorType::F32},   {"F16", 2, true, gguf::TensorType::F16},
    {"BF16", 2, true, gguf::TensorType::BF16}, {"F64", 8, false, {}},
    {"I64", 8, false, {}},  {"U64", 8, false, {}},  {"I32", 4, false, {}},
    {"U32", 4, false, {}},  {"I16", 2, false, {}},  {"U16", 2, false, {}},
    {"I8", 1, false, {}},   {"U8", 1, false, {}},   {"BOOL", 1, false, {}},
    {"F8_E4M3", 1, false, {}}, {"F8_E5M2", 1, false, {}},
};

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

// A JSON integer >= 0 (nlohmann parses non-negative literals as unsigned).
bool is_count(const nlohmann::json& v) { return v.is_number_unsigned(); }

// Where one tensor's bytes lie inside the data section.
struct ByteRange {
  uint64_t begin, end;
  size_t tensor;  // index in parse order
};

class HeaderParser {
 public:
  HeaderParser(const std::string& path, const uint8_t* data, uint64_t data_size)
      : path_(path), data_(data), data_size_(data_size) {}

  TensorView tensor(const std::string& name, const nlohmann::json& entry) {
    name_ = &name;
    if (!entry.is_object()) fail("its entry is " + json_type_name(entry) + ", expected an object");
    TensorView t;
    t.name = name;
    const DTypeInfo& dtype = parse_dtype(field(entry, "dtype"));
    t.type = dtype.type;
    t.shape = parse_shape(field(entry, "shape"));
    t.n_elements = 1;
    for (uint64_t d : t.shape)
      if (__builtin_mul_overflow(t.n_elements, d, &t.n_elements))
        fail("shape " + entry["shape"].dump() + " has more than 2^64 elements");
    uint64_t expected = 0;
    if (__builtin_mul_overflow(t.n_elements, dtype.bytes, &expected))
      fail("shape " + entry["shape"].dump() + " of " + dtype.name + " needs more than 2^64 bytes");
    const ByteRange range = parse_offsets(field(entry, "data_offsets"));
    if (range.end - range.begin != expected)
      fail("data_offsets [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
           ") hold " + std::to_string(range.end - range.begin) + " bytes, but shape " +
           entry["shape"].dump() + " of " + dtype.name + " needs " + std::to_string(expected));
    t.data = data_ + range.begin;
    ranges_.push_back({range.begin, range.end, ranges_.size()});
    return t;
  }

  // Called once all tensors are parsed; `tensors` are the views tensor() returned, in order.
  void check_no_overlaps(const std::vector<TensorView>& tensors) {
    std::sort(ranges_.begin(), ranges_.end(),
              [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
    const ByteRange* reach = nullptr;  // the range reaching furthest so far
    for (const ByteRange& r : ranges_) {
      if (r.begin == r.end) continue;  // empty tensors occupy no bytes
      if (reach && r.begin < reach->end)
        safetensors::fail(path_, "tensors '" + tensors[reach->tensor].name + "' (bytes " +
                                     std::to_string(reach->begin) + ".." + std::to_string(reach->end) +
                                     ") and '" + tensors[r.tensor].name + "' (bytes " +
                                     std::to_string(r.begin) + ".." + std::to_string(r.end) +
                                     ") overlap");
      if (!reach || r.end > reach->end) reach = &r;
    }
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    safetensors::fail(path_, "tensor '" + *name_ + "': " + message);
  }

  const nlohmann::json& field(const nlohmann::json& entry, const char* key) const {
    auto it = entry.find(key);
    if (it == entry.end()) fail(std::string("'") + key + "' is missing");
    return *it;
  }

  const DTypeInfo& parse_dtype(const nlohmann::json& v) const {
    if (!v.is_string()) fail("dtype is " + json_type_name(v) + ", expected a string");
    const std::string name = v.get<std::string>();
    for (const DTypeInfo& d : kDTypes) {
      if (name != d.name) continue;
      if (!d.supported) fail("dtype " + name + " is not supported (kvlm reads F32, F16, BF16)");
      return d;
    }
    fail("unknown dtype '" + name + "'");
  }

  std::vector<uint64_t> parse_shape(const nlohmann::json& v) const {
    if (!v.is_array()) fail("shape is " + json_type_name(v) + ", expected an array");
    if (v.size() > kMaxRank)
      fail("shape has " + std::to_string(v.size()) + " dimensions, more than " +
           std::to_string(kMaxRank));
    std::vector<uint64_t> shape;
    for (const nlohmann::json& d : v) {
      if (!is_count(d)) fail("shape " + v.dump() + " has an entry that is not an integer >= 0");
      shape.push_back(d.get<uint64_t>());
    }
    return shape;
  }

  ByteRange parse_offsets(const nlohmann::json& v) const {
    if (!v.is_array() || v.size() != 2 || !is_count(v[0]) || !is_count(v[1]))
      fail("data_offsets " + v.dump() + " is not a pair of integers >= 0");
    const uint64_t begin = v[0].get<uint64_t>(), end = v[1].get<uint64_t>();
    if (begin > end) fail("data_offsets " + v.dump() + " end before they begin");
    if (end > data_size_)
      fail("data_offsets " + v.dump() + " run past the end of the data section (" +
           std::to_string(data_size_) + " bytes)");
    return {begin, end, 0};
  }

  const std::string& path_;
  const uint8_t* data_;
  uint64_t data_size_;
  const std::string* name_ = nullptr;  // the tensor being parsed
  std::vector<ByteRange> ranges_;      // in the order tensors were parsed
};

// The shard files a weight_map names: plain names beside the index, since a path could
// point anywhere on the disk.
std::set<std::string> shard_names_of(const nlohmann::json& weight_map, const std::string& index_path) {
  std::set<std::string> names;
  for (const auto& [tensor, shard] : weight_map.items()) {
    if (!shard.is_string())
      fail(index_path, "weight_map entry '" + tensor + "' is " + json_type_name(shard) +
                           ", expected a file name");
    const std::string name = shard.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
      fail(index_path, "weight_map entry '" + tensor + "' names '" + name +
                           "', which is not a file name in this directory");
    names.insert(name);
  }
  if (names.empty()) fail(index_path, "weight_map is empty");
  return names;
}

}  // namespace

File::File(const std::string& path) : map_(path, "safetensors file") {
  const uint64_t size = map_.size();
  if (size < 8)
    fail(path, std::to_string(size) + " bytes is too short for a safetensors file (the header "
                                      "length alone takes 8)");
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, map_.data(), 8);
  if (header_bytes > kMaxHeaderBytes)
    fail(path, "header length " + std::to_string(header_bytes) + " exceeds the " +
                   std::to_string(kMaxHeaderBytes >> 20) + " MiB limit; not a safetensors file?");
  if (header_bytes > size - 8)
    fail(path, "header length " + std::to_string(header_bytes) + " runs past the end of the file (" +
                   std::to_string(size) + " bytes)");
  const auto* text = reinterpret_cast<const char*>(map_.data() + 8);
  const nlohmann::json header = parse_json({text, header_bytes}, path + ": header");
  if (!header.is_object())
    fail(path, "header is " + json_type_name(header) + ", expected a JSON object");

  const uint64_t data_start = 8 + header_bytes;
  HeaderParser parser(path, map_.data() + data_start, size - data_start);
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") continue;  // free-form strings; nothing kvlm needs
    tensors_.push_back(parser.tensor(name, entry));
  }
  parser.check_no_overlaps(tensors_);
}

ShardSet::ShardSet(const std::string& dir) {
  const std::string single = dir + "/model.safetensors";
  const std::string index_path = dir + "/model.safetensors.index.json";
  // transformers prefers the single file when both are present; so do we.
  if (is_file(single)) {
    files_.push_back(std::make_unique<File>(single));
    return;
  }
  if (!is_file(index_path))
    fail(dir, "has neither model.safetensors nor model.safetensors.index.json");
  sharded_ = true;

  const nlohmann::json index = read_json_file(index_path);
  const auto map_it = index.is_object() ? index.find("weight_map") : index.end();
  if (map_it == index.end() || !map_it->is_object())
    fail(index_path, "has no 'weight_map' object");
  const std::set<std::string> shard_names = shard_names_of(*map_it, index_path);

  std::map<std::string, const File*> owner;  // tensor name -> the shard holding it
  for (const std::string& name : shard_names) {
    const std::string shard_path = dir + "/" + name;
    if (!is_file(shard_path))
      fail(index_path, "names shard '" + name + "', which is not in " + dir);
    files_.push_back(std::make_unique<File>(shard_path));
    for (const TensorView& t : files_.back()->tensors()) {
      auto [it, fresh] = owner.emplace(t.name, files_.back().get());
      if (!fresh)
        fail(dir, "tensor '" + t.name + "' is in two shards: " + it->second->path() + " and " +
                      shard_path);
    }
  }
  for (const auto& [tensor, shard] : map_it->items()) {
    auto it = owner.find(tensor);
    const std::string expected = dir + "/" + shard.get<std::string>();
    if (it == owner.end() || it->second->path() != expected)
      fail(index_path, "weight_map puts tensor '" + tensor + "' in " + shard.get<std::string>() +
                           ", but that shard does not hold it");
  }
}

const char* ShardSet::source() const {
  return sharded_ ? "model.safetensors.index.json" : "model.safetensors";
}

uint64_t ShardSet::total_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

}  // namespace kvlm::safetensors
