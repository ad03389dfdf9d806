// GGUF reader. The parse is a single forward pass over the mapped bytes with a Cursor
// that refuses every read the file cannot satisfy, so a corrupt or hostile file ends in
// an Error naming the file, the item being parsed and the byte offset, never in a crash.
#include "model/gguf.h"

#include <array>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>

namespace kvlm::gguf {
namespace {

// GGUF is little-endian and we memcpy its fields straight into native integers.
static_assert(std::endian::native == std::endian::little,
              "kvlm reads GGUF on little-endian hosts only");

constexpr uint32_t kMaxDims = 4;     // ggml tensors have at most 4 dimensions
constexpr int kMaxArrayNesting = 4;  // bounds the recursion a crafted file can cause
// Smallest encodings, used to reject counts the remaining bytes cannot possibly hold
// before anything is allocated for them.
// A metadata entry: key length, value type, a u8. A tensor info: name length, n_dims,
// one dim, type, offset.
constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;

[[noreturn]] void fail(const std::string& path, const std::string& message) {
  throw Error(path + ": " + message);
}

// Names of every ggml type id we know of, so an unsupported file says what it contains.
const char* ggml_type_name(uint32_t id) {
  static const char* const names[] = {
      "F32",     "F16",    "Q4_0",    "Q4_1",  "Q4_2",   "Q4_3",  "Q5_0",  "Q5_1",
      "Q8_0",    "Q8_1",   "Q2_K",    "Q3_K",  "Q4_K",   "Q5_K",  "Q6_K",  "Q8_K",
      "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS",
      "I8",      "I16",    "I32",     "I64",   "F64",    "IQ1_M", "BF16",
  };
  return id < std::size(names) ? names[id] : "unknown";
}

bool is_supported(uint32_t id) {
  switch (static_cast<TensorType>(id)) {
    case TensorType::F32: case TensorType::F16: case TensorType::BF16:
    case TensorType::Q4_0: case TensorType::Q4_1: case TensorType::Q5_0: case TensorType::Q5_1:
    case TensorType::Q8_0: case TensorType::Q2_K: case TensorType::Q3_K: case TensorType::Q4_K:
    case TensorType::Q5_K: case TensorType::Q6_K: return true;
  }
  return false;
}

constexpr const char* kSupportedTypes =
    "F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K";

// Elements per block and bytes per block; plain float types are blocks of one.
struct BlockLayout {
  uint64_t elements;
  uint64_t bytes;
};

BlockLayout block_layout(TensorType t) {
  const WeightTypeInfo info = weight_type_info(weight_type(t));
  return {uint64_t(info.block_elems), uint64_t(info.block_bytes)};
}

bool valid_value_type(uint32_t id) { return id <= static_cast<uint32_t>(ValueType::F64); }

// Fewest bytes one value of this type can occupy in the file.
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::I8:
    case ValueType::Bool: return 1;
    case ValueType::U16:
    case ValueType::I16: return 2;
    case ValueType::U32:
    case ValueType::I32:
    case ValueType::F32: return 4;
    case ValueType::U64:
    case ValueType::I64:
    case ValueType::F64: return 8;
    case ValueType::String: return 8;     // length
    case ValueType::Array: return 4 + 8;  // element type, count
  }
  return 1;
}

// Sequential reader over the mapping. Every read checks the remaining bytes first;
// `context` names the item being parsed so errors can say where they happened.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void set_context(std::string context) { context_ = std::move(context); }

  // Throws "<path>: <context>: <message>".
  [[noreturn]] void fail(const std::string& message) const {
    gguf::fail(path_, context_.empty() ? message : context_ + ": " + message);
  }

  template <class T>
  T read(const char* field) {
    require(sizeof(T), field);
    T value;
    std::memcpy(&value, data_ + pos_, sizeof(T));  // the mapping gives no alignment guarantee
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* field) {
    const uint64_t length = read<uint64_t>(field);
    require(length, field);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), length);
    pos_ += length;
    return s;
  }

 private:
  void require(uint64_t n, const char* field) const {
    if (n <= remaining()) return;
    std::string where = context_.empty() ? field : context_ + ": " + field;
    gguf::fail(path_, "truncated: " + where + " needs " + std::to_string(n) + " bytes at offset " +
                          std::to_string(pos_) + ", file has " + std::to_string(size_));
  }

  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
  std::string context_;
};

Value read_value(Cursor& c, ValueType type, int nesting);

ValueType read_value_type(Cursor& c, const char* field) {
  const uint32_t id = c.read<uint32_t>(field);
  if (!valid_value_type(id)) c.fail("unknown metadata value type " + std::to_string(id));
  return static_cast<ValueType>(id);
}

Value read_array(Cursor& c, int nesting) {
  if (nesting > kMaxArrayNesting) {
    c.fail("arrays nested more than " + std::to_string(kMaxArrayNesting) + " deep");
  }
  const ValueType elem_type = read_value_type(c, "array element type");
  const uint64_t count = c.read<uint64_t>("array count");
  const uint64_t elem_size = min_encoded_size(elem_type);
  if (count > c.remaining() / elem_size) {
    c.fail("array count " + std::to_string(count) + " at offset " + std::to_string(c.pos() - 8) +
           " cannot fit in the " + std::to_string(c.remaining()) + " bytes left (each " +
           type_name(elem_type) + " needs at least " + std::to_string(elem_size) + ")");
  }
  Array elements;
  elements.reserve(count);
  for (uint64_t i = 0; i < count; ++i) elements.push_back(read_value(c, elem_type, nesting));
  return Value{ValueType::Array, std::move(elements)};
}

Value read_value(Cursor& c, ValueType type, int nesting) {
  switch (type) {
    case ValueType::U8: return {type, uint64_t{c.read<uint8_t>("u8 value")}};
    case ValueType::U16: return {type, uint64_t{c.read<uint16_t>("u16 value")}};
    case ValueType::U32: return {type, uint64_t{c.read<uint32_t>("u32 value")}};
    case ValueType::U64: return {type, c.read<uint64_t>("u64 value")};
    case ValueType::I8: return {type, int64_t{c.read<int8_t>("i8 value")}};
    case ValueType::I16: return {type, int64_t{c.read<int16_t>("i16 value")}};
    case ValueType::I32: return {type, int64_t{c.read<int32_t>("i32 value")}};
    case ValueType::I64: return {type, c.read<int64_t>("i64 value")};
    case ValueType::F32: return {type, double{c.read<float>("f32 value")}};
    case ValueType::F64: return {type, c.read<double>("f64 value")};
    case ValueType::Bool: {
      const uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) c.fail("bool value is " + std::to_string(b) + ", expected 0 or 1");
      return {type, b == 1};
    }
    case ValueType::String: return {type, c.read_string("string")};
    case ValueType::Array: return read_array(c, nesting + 1);
  }
  c.fail("unknown metadata value type " + std::to_string(static_cast<uint32_t>(type)));
}

std::string describe_type(const Value& v) {
  if (v.type != ValueType::Array) return type_name(v.type);
  const auto& elems = std::get<Array>(v.data);
  return elems.empty() ? "empty array" : std::string("array of ") + type_name(elems.front().type);
}

bool is_integer(ValueType t) {
  switch (t) {
    case ValueType::U8:
    case ValueType::U16:
    case ValueType::U32:
    case ValueType::U64:
    case ValueType::I8:
    case ValueType::I16:
    case ValueType::I32:
    case ValueType::I64: return true;
    default: return false;
  }
}

// Identifies a metadata value (or one element of an array value) in getter errors.
struct Where {
  const std::string& path;
  const std::string& key;
  int64_t index = -1;  // array element, or -1 for the value itself

  [[noreturn]] void fail(const std::string& message) const {
    std::string item = "metadata key '" + key + "'";
    if (index >= 0) item += " element " + std::to_string(index);
    gguf::fail(path, item + " " + message);
  }
  [[noreturn]] void wrong_type(const Value& v, const char* expected) const {
    fail("has type " + describe_type(v) + ", expected " + expected);
  }
};

int64_t as_int(const Value& v, const Where& where) {
  if (!is_integer(v.type)) where.wrong_type(v, "an integer");
  if (const auto* u = std::get_if<uint64_t>(&v.data)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      where.fail("value " + std::to_string(*u) + " does not fit in int64");
    }
    return static_cast<int64_t>(*u);
  }
  return std::get<int64_t>(v.data);
}

double as_float(const Value& v, const Where& where) {
  if (v.type == ValueType::F32 || v.type == ValueType::F64) return std::get<double>(v.data);
  if (!is_integer(v.type)) where.wrong_type(v, "a number");
  if (const auto* u = std::get_if<uint64_t>(&v.data)) return static_cast<double>(*u);
  return static_cast<double>(std::get<int64_t>(v.data));
}

const Array& as_array(const Value& v, const Where& where, const char* expected) {
  if (v.type != ValueType::Array) where.wrong_type(v, expected);
  return std::get<Array>(v.data);
}

const Value& lookup(const File& f, const std::string& key) {
  const Value* v = f.find(key);
  if (!v) fail(f.path(), "metadata key '" + key + "' is missing");
  return *v;
}

}  // namespace

const char* type_name(TensorType t) {
  const uint32_t id = static_cast<uint32_t>(t);
  return is_supported(id) ? ggml_type_name(id) : "unknown";
}

WeightType weight_type(TensorType t) {
  switch (t) {
    case TensorType::F32: return WeightType::F32;
    case TensorType::F16: return WeightType::F16;
    case TensorType::BF16: return WeightType::BF16;
    case TensorType::Q4_0: return WeightType::Q4_0;
    case TensorType::Q4_1: return WeightType::Q4_1;
    case TensorType::Q5_0: return WeightType::Q5_0;
    case TensorType::Q5_1: return WeightType::Q5_1;
    case TensorType::Q8_0: return WeightType::Q8_0;
    case TensorType::Q2_K: return WeightType::Q2_K;
    case TensorType::Q3_K: return WeightType::Q3_K;
    case TensorType::Q4_K: return WeightType::Q4_K;
    case TensorType::Q5_K: return WeightType::Q5_K;
    case TensorType::Q6_K: return WeightType::Q6_K;
  }
  throw Error("unsupported tensor type " + std::to_string(static_cast<uint32_t>(t)));
}

const char* type_name(ValueType t) {
  switch (t) {
    case ValueType::U8: return "u8";
    case ValueType::I8: return "i8";
    case ValueType::U16: return "u16";
    case ValueType::I16: return "i16";
    case ValueType::U32: return "u32";
    case ValueType::I32: return "i32";
    case ValueType::F32: return "f32";
    case ValueType::Bool: return "bool";
    case ValueType::String: return "string";
    case ValueType::Array: return "array";
    case ValueType::U64: return "u64";
    case ValueType::I64: return "i64";
    case ValueType::F64: return "f64";
  }
  return "unknown";
}

uint64_t tensor_bytes(TensorType t, uint64_t n_elements) {
  const BlockLayout layout = block_layout(t);
  if (n_elements % layout.elements != 0) {
    throw Error(std::to_string(n_elements) + " elements is not a whole number of " + type_name(t) +
                " blocks of " + std::to_string(layout.elements));
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n_elements / layout.elements, layout.bytes, &bytes)) {
    throw Error(std::to_string(n_elements) + " elements of " + type_name(t) +
                " overflow a 64-bit size");
  }
  return bytes;
}

// Fills a File from its mapping: header, metadata, alignment, tensor infos, then the
// tensor data ranges, in file order.
struct File::Parser {
  File& f;
  Cursor c;

  explicit Parser(File& file) : f(file), c(file.path_, file.map_->data(), file.map_->size()) {}

  void run() {
    header();
    const uint64_t tensor_count = c.read<uint64_t>("tensor count");
    const uint64_t metadata_count = c.read<uint64_t>("metadata count");
    // Both sections follow the header, so each count alone must fit in what is left.
    check_count_fits("metadata", metadata_count, kMinMetadataEntryBytes);
    check_count_fits("tensor", tensor_count, kMinTensorInfoBytes);
    metadata(metadata_count);
    alignment();
    tensor_infos(tensor_count);
    locate_tensor_data();
  }

  void check_count_fits(const char* what, uint64_t count, uint64_t min_each) {
    if (count <= c.remaining() / min_each) return;
    c.fail(std::string(what) + " count " + std::to_string(count) + " cannot fit in the " +
           std::to_string(c.remaining()) + " bytes after the header (each needs at least " +
           std::to_string(min_each) + ")");
  }

  void header() {
    c.set_context("header");
    const auto magic = c.read<std::array<uint8_t, 4>>("magic");
    if (std::memcmp(magic.data(), "GGUF", 4) != 0) {
      char found[12];
      std::snprintf(found, sizeof found, "%02x %02x %02x %02x", magic[0], magic[1], magic[2],
                    magic[3]);
      fail(f.path_, "bad magic: expected 'GGUF' (47 47 55 46), found " + std::string(found) +
                        "; not a GGUF file");
    }
    f.version_ = c.read<uint32_t>("version");
    if (f.version_ == 2 || f.version_ == 3) return;
    const uint32_t swapped = __builtin_bswap32(f.version_);
    if (swapped == 2 || swapped == 3) {
      fail(f.path_, "big-endian GGUF (version field " + std::to_string(f.version_) +
                        ") is not supported; kvlm reads little-endian versions 2 and 3");
    }
    // Version 1 used 32-bit counts and lengths, so it is not just a different number.
    fail(f.path_, "unsupported GGUF version " + std::to_string(f.version_) +
                      "; kvlm reads versions 2 and 3");
  }

  void metadata(uint64_t count) {
    for (uint64_t i = 0; i < count; ++i) {
      c.set_context("metadata entry " + std::to_string(i));
      std::string key = c.read_string("key");
      c.set_context("metadata entry " + std::to_string(i) + " ('" + key + "')");
      if (f.has(key)) c.fail("duplicate metadata key");
      const ValueType type = read_value_type(c, "value type");
      f.metadata_.emplace(std::move(key), read_value(c, type, 0));
    }
  }

  void alignment() {
    if (!f.has("general.alignment")) return;
    const int64_t a = f.get_int("general.alignment");
    if (a <= 0 || !std::has_single_bit(static_cast<uint64_t>(a))) {
      fail(f.path_,
           "general.alignment is " + std::to_string(a) + "; it must be a nonzero power of two");
    }
    f.alignment_ = static_cast<uint64_t>(a);
  }

  void tensor_infos(uint64_t count) {
    f.tensors_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      c.set_context("tensor info " + std::to_string(i));
      TensorInfo t;
      t.name = c.read_string("name");
      c.set_context("tensor info " + std::to_string(i) + " ('" + t.name + "')");
      if (f.tensor_index_.count(t.name) != 0) c.fail("duplicate tensor name");

      const uint32_t n_dims = c.read<uint32_t>("n_dims");
      if (n_dims == 0 || n_dims > kMaxDims) {
        c.fail("n_dims is " + std::to_string(n_dims) + "; must be 1.." + std::to_string(kMaxDims));
      }
      for (uint32_t d = 0; d < n_dims; ++d) t.dims.push_back(c.read<uint64_t>("dims"));

      const uint32_t type_id = c.read<uint32_t>("ggml type");
      if (!is_supported(type_id)) {
        fail(f.path_, "tensor '" + t.name + "' has ggml type " + std::to_string(type_id) + " (" +
                          ggml_type_name(type_id) +
                          "), which kvlm cannot read; supported: " + kSupportedTypes);
      }
      t.type = static_cast<TensorType>(type_id);
      t.offset = c.read<uint64_t>("offset");
      size_tensor(t);

      f.tensor_index_.emplace(t.name, f.tensors_.size());
      f.tensors_.push_back(std::move(t));
    }
  }

  // Fills n_elements and n_bytes, refusing shapes whose sizes overflow or split a block.
  void size_tensor(TensorInfo& t) {
    uint64_t n = 1;
    for (uint64_t d : t.dims) {
      if (__builtin_mul_overflow(n, d, &n)) c.fail("dims product overflows 64 bits");
    }
    // As in ggml, every row is whole blocks, so a row can be dequantised on its own.
    const BlockLayout layout = block_layout(t.type);
    if (t.dims[0] % layout.elements != 0) {
      c.fail("dims[0] = " + std::to_string(t.dims[0]) + " is not a multiple of the " +
             type_name(t.type) + " block size " + std::to_string(layout.elements));
    }
    try {
      t.n_bytes = tensor_bytes(t.type, n);
    } catch (const Error& e) {
      c.fail(e.what());
    }
    t.n_elements = n;
  }

  // The data section starts at the first aligned offset after the tensor infos; every
  // tensor must be aligned inside it and end within the file.
  void locate_tensor_data() {
    const uint64_t align = f.alignment_;
    uint64_t data_start = 0;
    if (__builtin_add_overflow(c.pos(), align - 1, &data_start)) {
      fail(f.path_, "data section start overflows 64 bits");
    }
    data_start &= ~(align - 1);

    for (TensorInfo& t : f.tensors_) {
      if (t.offset % align != 0) {
        fail(f.path_, "tensor '" + t.name + "' offset " + std::to_string(t.offset) +
                          " is not a multiple of the alignment " + std::to_string(align));
      }
      uint64_t begin = 0, end = 0;
      if (__builtin_add_overflow(data_start, t.offset, &begin) ||
          __builtin_add_overflow(begin, t.n_bytes, &end) || end > f.file_size()) {
        fail(f.path_, "tensor '" + t.name + "' data (offset " + std::to_string(t.offset) + ", " +
                          std::to_string(t.n_bytes) + " bytes, data section at " +
                          std::to_string(data_start) + ") runs past the end of the file (" +
                          std::to_string(f.file_size()) + " bytes)");
      }
      t.data = f.map_->data() + begin;
    }
  }
};

File::File(const std::string& path) : path_(path) {
  try {
    map_ = std::make_unique<MappedFile>(path, "GGUF file");
  } catch (const std::runtime_error& e) {
    throw Error(e.what());
  }
  Parser{*this}.run();
}

File::~File() = default;

const Value* File::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::string File::get_string(const std::string& key) const {
  const Value& v = lookup(*this, key);
  if (v.type != ValueType::String) Where{path_, key}.wrong_type(v, "string");
  return std::get<std::string>(v.data);
}

int64_t File::get_int(const std::string& key) const {
  return as_int(lookup(*this, key), Where{path_, key});
}

double File::get_float(const std::string& key) const {
  return as_float(lookup(*this, key), Where{path_, key});
}

bool File::get_bool(const std::string& key) const {
  const Value& v = lookup(*this, key);
  if (v.type != ValueType::Bool) Where{path_, key}.wrong_type(v, "bool");
  return std::get<bool>(v.data);
}

std::vector<std::string> File::get_strings(const std::string& key) const {
  const Array& elems = as_array(lookup(*this, key), Where{path_, key}, "array of string");
  std::vector<std::string> out;
  out.reserve(elems.size());
  for (size_t i = 0; i < elems.size(); ++i) {
    if (elems[i].type != ValueType::String) {
      Where{path_, key, static_cast<int64_t>(i)}.wrong_type(elems[i], "string");
    }
    out.push_back(std::get<std::string>(elems[i].data));
  }
  return out;
}

std::vector<double> File::get_floats(const std::string& key) const {
  const Array& elems = as_array(lookup(*this, key), Where{path_, key}, "array of numbers");
  std::vector<double> out;
  out.reserve(elems.size());
  for (size_t i = 0; i < elems.size(); ++i) {
    out.push_back(as_float(elems[i], Where{path_, key, static_cast<int64_t>(i)}));
  }
  return out;
}

std::vector<int64_t> File::get_ints(const std::string& key) const {
  const Array& elems = as_array(lookup(*this, key), Where{path_, key}, "array of integers");
  std::vector<int64_t> out;
  out.reserve(elems.size());
  for (size_t i = 0; i < elems.size(); ++i) {
    out.push_back(as_int(elems[i], Where{path_, key, static_cast<int64_t>(i)}));
  }
  return out;
}

std::string File::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

int64_t File::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double File::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}

bool File::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

const TensorInfo* File::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvlm::gguf
