#include "tests/gguf_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "model/dequant.h"

namespace kvlm::test {
namespace {

using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;

constexpr size_t kBlockSize = 32;
constexpr auto kArray = static_cast<uint32_t>(ValueType::Array);

// Appends the little-endian bytes of a trivially copyable value.
template <class T>
void append(std::vector<uint8_t>& out, T v) {
  const size_t at = out.size();
  out.resize(at + sizeof v);
  std::memcpy(out.data() + at, &v, sizeof v);
}

void append_string(std::vector<uint8_t>& out, const std::string& s) {
  append<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

void append_f16(std::vector<uint8_t>& out, float v) { append<uint16_t>(out, f32_to_f16(v)); }

void encode(std::vector<uint8_t>& out, const Value& v);

void encode_array(std::vector<uint8_t>& out, const gguf::Array& elems) {
  const ValueType elem_type = elems.empty() ? ValueType::U8 : elems.front().type;
  append<uint32_t>(out, static_cast<uint32_t>(elem_type));
  append<uint64_t>(out, elems.size());
  for (const Value& e : elems) {
    if (e.type != elem_type) {
      throw std::invalid_argument("GGUFWriter: array elements of mixed types");
    }
    encode(out, e);
  }
}

// Encodes a value without its type id (the caller writes that first).
void encode(std::vector<uint8_t>& out, const Value& v) {
  auto u = [&] { return std::get<uint64_t>(v.data); };
  auto i = [&] { return std::get<int64_t>(v.data); };
  auto f = [&] { return std::get<double>(v.data); };
  switch (v.type) {
    case ValueType::U8: return append(out, static_cast<uint8_t>(u()));
    case ValueType::U16: return append(out, static_cast<uint16_t>(u()));
    case ValueType::U32: return append(out, static_cast<uint32_t>(u()));
    case ValueType::U64: return append(out, u());
    case ValueType::I8: return append(out, static_cast<int8_t>(i()));
    case ValueType::I16: return append(out, static_cast<int16_t>(i()));
    case ValueType::I32: return append(out, static_cast<int32_t>(i()));
    case ValueType::I64: return append(out, i());
    case ValueType::F32: return append(out, static_cast<float>(f()));
    case ValueType::F64: return append(out, f());
    case ValueType::Bool: return append<uint8_t>(out, std::get<bool>(v.data) ? 1 : 0);
    case ValueType::String: return append_string(out, std::get<std::string>(v.data));
    case ValueType::Array: return encode_array(out, std::get<gguf::Array>(v.data));
  }
  throw std::invalid_argument("GGUFWriter: unknown value type");
}

// Q8_0: d = max|x| / 127, q = round(x / d).
void quantize_q8_0_block(const float* x, std::vector<uint8_t>& out) {
  float amax = 0;
  for (size_t i = 0; i < kBlockSize; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127;
  const float inv_d = d != 0 ? 1 / d : 0;
  append_f16(out, d);
  for (size_t i = 0; i < kBlockSize; ++i) {
    append(out, static_cast<int8_t>(std::round(x[i] * inv_d)));
  }
}

// Q4_0: the value of largest magnitude maps to q = 0 (-8 * d), so d = that value / -8.
void quantize_q4_0_block(const float* x, std::vector<uint8_t>& out) {
  float max = 0;
  for (size_t i = 0; i < kBlockSize; ++i) {
    if (std::fabs(x[i]) > std::fabs(max)) max = x[i];
  }
  const float d = max / -8;
  const float inv_d = d != 0 ? 1 / d : 0;
  append_f16(out, d);
  auto q = [&](size_t i) {
    return std::min<uint8_t>(15, static_cast<uint8_t>(x[i] * inv_d + 8.5f));
  };
  // Low nibbles hold weights 0..15, high nibbles 16..31.
  for (size_t i = 0; i < kBlockSize / 2; ++i) {
    append<uint8_t>(out, q(i) | (q(i + kBlockSize / 2) << 4));
  }
}

// Q4_1: d = (max - min) / 15, m = min, q = round((x - min) / d).
void quantize_q4_1_block(const float* x, std::vector<uint8_t>& out) {
  const auto [min_it, max_it] = std::minmax_element(x, x + kBlockSize);
  const float min = *min_it, d = (*max_it - min) / 15;
  const float inv_d = d != 0 ? 1 / d : 0;
  append_f16(out, d);
  append_f16(out, min);
  auto q = [&](size_t i) {
    return std::min<uint8_t>(15, static_cast<uint8_t>((x[i] - min) * inv_d + 0.5f));
  };
  // Low nibbles hold weights 0..15, high nibbles 16..31.
  for (size_t i = 0; i < kBlockSize / 2; ++i) {
    append<uint8_t>(out, q(i) | (q(i + kBlockSize / 2) << 4));
  }
}

// Typed array setters know their element type even when the array is empty.
template <class T>
std::vector<uint8_t> encode_array_of(ValueType elem_type, const std::vector<T>& values) {
  std::vector<uint8_t> payload;
  append<uint32_t>(payload, static_cast<uint32_t>(elem_type));
  append<uint64_t>(payload, values.size());
  for (const T& v : values) {
    if constexpr (std::is_same_v<T, std::string>) {
      append_string(payload, v);
    } else {
      append(payload, v);
    }
  }
  return payload;
}

}  // namespace

std::vector<uint8_t> quantize(TensorType type, const std::vector<float>& values) {
  std::vector<uint8_t> out;
  const bool blocked =
      type == TensorType::Q8_0 || type == TensorType::Q4_0 || type == TensorType::Q4_1;
  if (blocked && values.size() % kBlockSize != 0) {
    throw std::invalid_argument("quantize: value count is not a multiple of 32");
  }
  out.reserve(gguf::tensor_bytes(type, values.size()));
  switch (type) {
    case TensorType::F32:
      for (float v : values) append(out, v);
      break;
    case TensorType::F16:
      for (float v : values) append<uint16_t>(out, f32_to_f16(v));
      break;
    case TensorType::BF16:
      for (float v : values) append<uint16_t>(out, f32_to_bf16(v));
      break;
    case TensorType::Q8_0:
      for (size_t b = 0; b < values.size(); b += kBlockSize) quantize_q8_0_block(&values[b], out);
      break;
    case TensorType::Q4_0:
      for (size_t b = 0; b < values.size(); b += kBlockSize) quantize_q4_0_block(&values[b], out);
      break;
    case TensorType::Q4_1:
      for (size_t b = 0; b < values.size(); b += kBlockSize) quantize_q4_1_block(&values[b], out);
      break;
    default:  // the others kvlm reads come from llama-quantize (tests/golden/)
      throw std::invalid_argument(std::string("quantize: the test writer cannot write ") +
                                  gguf::type_name(type));
  }
  return out;
}

void GGUFWriter::set(const std::string& key, uint8_t v) {
  set(key, Value{ValueType::U8, uint64_t{v}});
}
void GGUFWriter::set(const std::string& key, int8_t v) {
  set(key, Value{ValueType::I8, int64_t{v}});
}
void GGUFWriter::set(const std::string& key, uint16_t v) {
  set(key, Value{ValueType::U16, uint64_t{v}});
}
void GGUFWriter::set(const std::string& key, int16_t v) {
  set(key, Value{ValueType::I16, int64_t{v}});
}
void GGUFWriter::set(const std::string& key, uint32_t v) {
  set(key, Value{ValueType::U32, uint64_t{v}});
}
void GGUFWriter::set(const std::string& key, int32_t v) {
  set(key, Value{ValueType::I32, int64_t{v}});
}
void GGUFWriter::set(const std::string& key, uint64_t v) { set(key, Value{ValueType::U64, v}); }
void GGUFWriter::set(const std::string& key, int64_t v) { set(key, Value{ValueType::I64, v}); }
void GGUFWriter::set(const std::string& key, float v) {
  set(key, Value{ValueType::F32, double{v}});
}
void GGUFWriter::set(const std::string& key, double v) { set(key, Value{ValueType::F64, v}); }
void GGUFWriter::set(const std::string& key, bool v) { set(key, Value{ValueType::Bool, v}); }
void GGUFWriter::set(const std::string& key, const char* v) { set(key, std::string(v)); }
void GGUFWriter::set(const std::string& key, const std::string& v) {
  set(key, Value{ValueType::String, v});
}

void GGUFWriter::set(const std::string& key, const std::vector<std::string>& v) {
  put(key, kArray, encode_array_of(ValueType::String, v));
}
void GGUFWriter::set(const std::string& key, const std::vector<float>& v) {
  put(key, kArray, encode_array_of(ValueType::F32, v));
}
void GGUFWriter::set(const std::string& key, const std::vector<int32_t>& v) {
  put(key, kArray, encode_array_of(ValueType::I32, v));
}
void GGUFWriter::set(const std::string& key, const std::vector<uint32_t>& v) {
  put(key, kArray, encode_array_of(ValueType::U32, v));
}

void GGUFWriter::set(const std::string& key, const Value& v) {
  std::vector<uint8_t> payload;
  encode(payload, v);
  put(key, static_cast<uint32_t>(v.type), std::move(payload));
}

void GGUFWriter::set_raw(const std::string& key, uint32_t value_type,
                         std::vector<uint8_t> payload) {
  put(key, value_type, std::move(payload));
}

void GGUFWriter::put(const std::string& key, uint32_t value_type, std::vector<uint8_t> payload) {
  for (Entry& e : metadata_) {
    if (e.key == key) {
      e.value_type = value_type;
      e.payload = std::move(payload);
      return;
    }
  }
  metadata_.push_back({key, value_type, std::move(payload)});
}

// The layout follows general.alignment when it is a usable u32, as a reader would.
uint64_t GGUFWriter::alignment() const {
  for (const Entry& e : metadata_) {
    if (e.key != "general.alignment" || e.value_type != static_cast<uint32_t>(ValueType::U32)) {
      continue;
    }
    uint32_t a = 0;
    std::memcpy(&a, e.payload.data(), sizeof a);
    if (std::has_single_bit(a)) return a;
  }
  return 32;
}

void GGUFWriter::add_tensor(const std::string& name, std::vector<uint64_t> dims, TensorType type,
                            const std::vector<float>& values) {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  if (n != values.size()) {
    throw std::invalid_argument("GGUFWriter::add_tensor('" + name + "'): dims hold " +
                                std::to_string(n) + " elements but " +
                                std::to_string(values.size()) + " values were given");
  }
  add_raw_tensor(name, std::move(dims), static_cast<uint32_t>(type), quantize(type, values));
}

void GGUFWriter::add_raw_tensor(const std::string& name, std::vector<uint64_t> dims,
                                uint32_t ggml_type, std::vector<uint8_t> data) {
  tensors_.push_back({name, std::move(dims), ggml_type, std::move(data)});
}

std::vector<uint8_t> GGUFWriter::bytes() const {
  const uint64_t align = alignment();
  auto padded = [align](uint64_t n) { return (n + align - 1) / align * align; };

  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  append<uint32_t>(out, version_);
  append<uint64_t>(out, tensors_.size());
  append<uint64_t>(out, metadata_.size());
  for (const Entry& e : metadata_) {
    append_string(out, e.key);
    append<uint32_t>(out, e.value_type);
    out.insert(out.end(), e.payload.begin(), e.payload.end());
  }

  uint64_t offset = 0;  // within the data section
  for (const Tensor& t : tensors_) {
    append_string(out, t.name);
    append<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) append<uint64_t>(out, d);
    append<uint32_t>(out, t.ggml_type);
    append<uint64_t>(out, offset);
    offset = padded(offset + t.data.size());
  }

  // No padding after the last tensor, so that every truncation is detectable.
  for (const Tensor& t : tensors_) {
    out.resize(padded(out.size()), 0);
    out.insert(out.end(), t.data.begin(), t.data.end());
  }
  return out;
}

void GGUFWriter::write(const std::string& path) const { write_file(path, bytes()); }

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  f.close();
  if (!f) throw std::runtime_error("cannot write " + path);
}

TempFile::TempFile(const std::string& name) {
  static std::atomic<int> counter{0};
  path_ = ::testing::TempDir() + "kvlm_" + std::to_string(::getpid()) + "_" +
          std::to_string(counter++) + "_" + name;
}

TempFile::~TempFile() { std::remove(path_.c_str()); }

}  // namespace kvlm::test
