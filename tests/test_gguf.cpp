// GGUF reader: valid files read back exactly; every kind of corruption ends in a
// gguf::Error that names the file, never in a crash (run under ASan/UBSan too).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include "model/dequant.h"
#include "model/gguf.h"
#include "tests/gguf_writer.h"

namespace kvlm {
namespace {

using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;
using test::GGUFWriter;
using test::TempFile;

constexpr TensorType kAllTypes[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                                    TensorType::Q8_0, TensorType::Q4_0, TensorType::Q4_1};

// Deterministic values in [-1, 1) with no structure a quantiser could exploit.
std::vector<float> wavy(size_t n, float phase = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::sin(0.7f * static_cast<float>(i) + phase) * 0.9f;
  return v;
}

// Writes the bytes to a temporary file and opens it. Unlinking the file afterwards is
// fine: the mapping keeps the data alive.
std::unique_ptr<gguf::File> open_bytes(const std::vector<uint8_t>& bytes) {
  TempFile file("valid.gguf");
  test::write_file(file.path(), bytes);
  return std::make_unique<gguf::File>(file.path());
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Opens the bytes expecting a gguf::Error that starts with the path; returns its message.
std::string open_error(const std::vector<uint8_t>& bytes) {
  TempFile file("corrupt.gguf");
  test::write_file(file.path(), bytes);
  try {
    gguf::File f(file.path());
  } catch (const gguf::Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(file.path() + ": ", 0), 0u)
        << "message does not start with the path: " << message;
    return message;
  }
  ADD_FAILURE() << "a corrupt file (" << bytes.size() << " bytes) was accepted";
  return "";
}

// Use as EXPECT_TRUE(mentions(message, {"truncated", "offset 4"})).
::testing::AssertionResult mentions(const std::string& message,
                                    std::initializer_list<std::string> words) {
  for (const std::string& word : words) {
    if (!contains(message, word)) {
      return ::testing::AssertionFailure() << "'" << word << "' not in: " << message;
    }
  }
  return ::testing::AssertionSuccess();
}

size_t find_unique(const std::vector<uint8_t>& bytes, const std::string& needle) {
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  if (it == bytes.end()) throw std::logic_error("'" + needle + "' not in the file");
  if (std::search(it + 1, bytes.end(), needle.begin(), needle.end()) != bytes.end()) {
    throw std::logic_error("'" + needle + "' occurs twice in the file");
  }
  return static_cast<size_t>(it - bytes.begin());
}

template <class T>
void poke(std::vector<uint8_t>& bytes, size_t pos, T value) {
  ASSERT_LE(pos + sizeof value, bytes.size());
  std::memcpy(bytes.data() + pos, &value, sizeof value);
}

// Where the fields after a tensor's name (or a metadata key) start in the file.
size_t after(const std::vector<uint8_t>& bytes, const std::string& name) {
  return find_unique(bytes, name) + name.size();
}

// A file with several metadata types and one tensor of every type.
GGUFWriter sample_writer() {
  GGUFWriter w;
  w.set("general.architecture", "llama");
  w.set("sample.count", uint32_t{7});
  w.set("sample.flag", true);
  w.set("sample.tokens", std::vector<std::string>{"<s>", "hello", " world"});
  w.set("sample.scores", std::vector<float>{0.5f, -1.0f, 2.0f});
  w.add_tensor("tensor_f32", {4, 2}, TensorType::F32, wavy(8));
  w.add_tensor("tensor_f16", {3}, TensorType::F16, wavy(3));
  w.add_tensor("tensor_bf16", {5}, TensorType::BF16, wavy(5));
  w.add_tensor("tensor_q8_0", {32, 2}, TensorType::Q8_0, wavy(64));
  w.add_tensor("tensor_q4_0", {64}, TensorType::Q4_0, wavy(64));
  w.add_tensor("tensor_q4_1", {32, 1, 2}, TensorType::Q4_1, wavy(64));
  return w;
}

// ---------------------------------------------------------------- valid files

class GGUFVersions : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GGUFVersions, ReadsEveryMetadataType) {
  GGUFWriter w(GetParam());
  w.set("t.u8", uint8_t{200});
  w.set("t.i8", int8_t{-100});
  w.set("t.u16", uint16_t{60000});
  w.set("t.i16", int16_t{-30000});
  w.set("t.u32", uint32_t{4000000000u});
  w.set("t.i32", int32_t{-2000000000});
  w.set("t.u64", uint64_t{1} << 40);
  w.set("t.i64", int64_t{-(int64_t{1} << 40)});
  w.set("t.f32", 1.5f);
  w.set("t.f64", 0.1);
  w.set("t.bool", true);
  w.set("t.string", "caf\xc3\xa9");
  w.set("t.empty_string", "");
  const auto f = open_bytes(w.bytes());

  EXPECT_EQ(f->version(), GetParam());
  EXPECT_EQ(f->metadata().size(), 13u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_TRUE(f->tensors().empty());
  const std::pair<const char*, ValueType> types[] = {
      {"t.u8", ValueType::U8},   {"t.i8", ValueType::I8},     {"t.u16", ValueType::U16},
      {"t.i16", ValueType::I16}, {"t.u32", ValueType::U32},   {"t.i32", ValueType::I32},
      {"t.u64", ValueType::U64}, {"t.i64", ValueType::I64},   {"t.f32", ValueType::F32},
      {"t.f64", ValueType::F64}, {"t.bool", ValueType::Bool}, {"t.string", ValueType::String}};
  for (const auto& [key, type] : types) {
    ASSERT_NE(f->find(key), nullptr) << key;
    EXPECT_EQ(f->find(key)->type, type) << key;
  }
  EXPECT_EQ(f->get_int("t.u8"), 200);
  EXPECT_EQ(f->get_int("t.i8"), -100);
  EXPECT_EQ(f->get_int("t.u16"), 60000);
  EXPECT_EQ(f->get_int("t.i16"), -30000);
  EXPECT_EQ(f->get_int("t.u32"), 4000000000);
  EXPECT_EQ(f->get_int("t.i32"), -2000000000);
  EXPECT_EQ(f->get_int("t.u64"), int64_t{1} << 40);
  EXPECT_EQ(f->get_int("t.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(f->get_float("t.f32"), 1.5);
  EXPECT_EQ(f->get_float("t.f64"), 0.1);
  EXPECT_TRUE(f->get_bool("t.bool"));
  EXPECT_EQ(f->get_string("t.string"), "caf\xc3\xa9");
  EXPECT_EQ(f->get_string("t.empty_string"), "");
}

TEST_P(GGUFVersions, ReadsTensorsOfEveryType) {
  GGUFWriter w(GetParam());
  for (TensorType type : kAllTypes) {
    w.add_tensor(std::string("t_") + gguf::type_name(type), {32, 3}, type, wavy(96));
  }
  const auto f = open_bytes(w.bytes());
  ASSERT_EQ(f->tensors().size(), std::size(kAllTypes));
  for (TensorType type : kAllTypes) {
    const gguf::TensorInfo* t = f->find_tensor(std::string("t_") + gguf::type_name(type));
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->type, type);
    EXPECT_EQ(t->dims, (std::vector<uint64_t>{32, 3}));
    EXPECT_EQ(t->n_elements, 96u);
    EXPECT_EQ(t->n_bytes, gguf::tensor_bytes(type, 96));
    const std::vector<uint8_t> expected = test::quantize(type, wavy(96));
    ASSERT_EQ(expected.size(), t->n_bytes);
    EXPECT_EQ(std::memcmp(t->data, expected.data(), expected.size()), 0) << gguf::type_name(type);
  }
}

INSTANTIATE_TEST_SUITE_P(V2AndV3, GGUFVersions, ::testing::Values(2u, 3u));

TEST(GGUFRead, StringArraysAndNestedArrays) {
  GGUFWriter w;
  w.set("tokens", std::vector<std::string>{"a", "", "\xe2\x96\x81the"});
  w.set("ids", std::vector<int32_t>{-1, 0, 7});
  w.set("empty", std::vector<std::string>{});
  const Value row0{ValueType::Array,
                   gguf::Array{{ValueType::U16, uint64_t{1}}, {ValueType::U16, uint64_t{2}}}};
  const Value row1{ValueType::Array, gguf::Array{{ValueType::U16, uint64_t{3}}}};
  w.set("matrix", Value{ValueType::Array, gguf::Array{row0, row1}});
  const Value names{ValueType::Array, gguf::Array{{ValueType::String, std::string("x")}}};
  w.set("nested_strings", Value{ValueType::Array, gguf::Array{names, names}});
  const auto f = open_bytes(w.bytes());

  EXPECT_EQ(f->get_strings("tokens"), (std::vector<std::string>{"a", "", "\xe2\x96\x81the"}));
  EXPECT_EQ(f->get_ints("ids"), (std::vector<int64_t>{-1, 0, 7}));
  EXPECT_EQ(f->get_floats("ids"), (std::vector<double>{-1, 0, 7}));
  EXPECT_TRUE(f->get_strings("empty").empty());

  const auto& matrix = std::get<gguf::Array>(f->find("matrix")->data);
  ASSERT_EQ(matrix.size(), 2u);
  const auto& r0 = std::get<gguf::Array>(matrix[0].data);
  const auto& r1 = std::get<gguf::Array>(matrix[1].data);
  ASSERT_EQ(r0.size(), 2u);
  ASSERT_EQ(r1.size(), 1u);
  EXPECT_EQ(r0[1].type, ValueType::U16);
  EXPECT_EQ(std::get<uint64_t>(r0[1].data), 2u);
  EXPECT_EQ(std::get<uint64_t>(r1[0].data), 3u);
  const auto& nested = std::get<gguf::Array>(f->find("nested_strings")->data);
  EXPECT_EQ(std::get<std::string>(std::get<gguf::Array>(nested[1].data)[0].data), "x");
}

// Nesting up to the limit reads; one level more is refused before recursing further.
Value nested_array(int depth) {
  Value v{ValueType::U8, uint64_t{5}};
  for (int i = 0; i < depth; ++i) v = Value{ValueType::Array, gguf::Array{v}};
  return v;
}

TEST(GGUFRead, ArrayNestingLimit) {
  GGUFWriter ok;
  ok.set("deep", nested_array(4));
  EXPECT_NE(open_bytes(ok.bytes())->find("deep"), nullptr);

  GGUFWriter too_deep;
  too_deep.set("deep", nested_array(5));
  EXPECT_TRUE(mentions(open_error(too_deep.bytes()), {"nested", "'deep'"}));
}

class GGUFAlignment : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GGUFAlignment, TensorsLandOnTheAlignment) {
  const uint32_t alignment = GetParam();
  GGUFWriter w;
  w.set_alignment(alignment);
  for (TensorType type : kAllTypes) {
    w.add_tensor(std::string("t_") + gguf::type_name(type), {64}, type, wavy(64, 1.0f));
  }
  const std::vector<uint8_t> bytes = w.bytes();
  const auto f = open_bytes(bytes);
  EXPECT_EQ(f->alignment(), alignment);
  EXPECT_EQ(f->file_size(), bytes.size());
  // The last tensor ends the file, so the data section starts where it begins minus its offset.
  const gguf::TensorInfo& last = f->tensors().back();
  const uint8_t* data_section = last.data - last.offset;
  const uint64_t data_start = bytes.size() - last.n_bytes - last.offset;
  EXPECT_EQ(data_start % alignment, 0u);
  for (const gguf::TensorInfo& t : f->tensors()) {
    EXPECT_EQ(t.offset % alignment, 0u) << t.name;
    EXPECT_EQ(t.data, data_section + t.offset) << t.name;
    EXPECT_EQ(std::memcmp(t.data, bytes.data() + data_start + t.offset, t.n_bytes), 0) << t.name;
    std::vector<float> out(t.n_elements);
    dequantize(t.type, t.data, out.data(), out.size());
    const std::vector<float> expected = wavy(64, 1.0f);
    // Q4_0 is the coarsest: up to max|x| / 8 = 0.1125 off (see test_dequant.cpp).
    for (size_t i = 0; i < out.size(); ++i) {
      EXPECT_NEAR(out[i], expected[i], 0.12f) << t.name << " " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Alignments, GGUFAlignment, ::testing::Values(1u, 8u, 32u, 64u, 4096u));

TEST(GGUFRead, HeaderOnlyFileIsValid) {
  const auto f = open_bytes(GGUFWriter().bytes());
  EXPECT_EQ(f->file_size(), 24u);
  EXPECT_TRUE(f->metadata().empty());
  EXPECT_TRUE(f->tensors().empty());
}

TEST(GGUFRead, FindTensorAndTrailingBytes) {
  std::vector<uint8_t> bytes = sample_writer().bytes();
  bytes.resize(bytes.size() + 100, 0xAB);  // data after the last tensor is not ours to judge
  const auto f = open_bytes(bytes);
  EXPECT_EQ(f->tensors().size(), 6u);
  EXPECT_EQ(f->find_tensor("tensor_q4_1")->dims, (std::vector<uint64_t>{32, 1, 2}));
  EXPECT_EQ(f->find_tensor("missing"), nullptr);
  EXPECT_EQ(f->tensors()[0].name, "tensor_f32");  // file order is kept
}

TEST(GGUFRead, ZeroSizedDimension) {
  GGUFWriter w = sample_writer();
  w.add_tensor("empty", {32, 0}, TensorType::Q8_0, {});
  const auto f = open_bytes(w.bytes());
  const gguf::TensorInfo* t = f->find_tensor("empty");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->n_elements, 0u);
  EXPECT_EQ(t->n_bytes, 0u);
}

// ---------------------------------------------------------------- typed getters

TEST(GGUFGetters, WrongTypeAndMissingKeyNameTheKey) {
  GGUFWriter w;
  w.set("s", "text");
  w.set("n", uint32_t{3});
  w.set("big", std::numeric_limits<uint64_t>::max());
  w.set("mixed", std::vector<float>{1.0f});
  w.set("words", std::vector<std::string>{"a"});
  const auto f = open_bytes(w.bytes());
  auto error = [](auto&& call) -> std::string {
    try {
      call();
    } catch (const gguf::Error& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_TRUE(mentions(error([&] { f->get_int("s"); }), {"'s'", "string", "integer"}));
  EXPECT_TRUE(mentions(error([&] { f->get_float("s"); }), {"'s'", "string"}));
  EXPECT_TRUE(mentions(error([&] { f->get_bool("n"); }), {"'n'", "u32", "bool"}));
  EXPECT_TRUE(mentions(error([&] { f->get_string("n"); }), {"'n'", "u32", "string"}));
  EXPECT_TRUE(mentions(error([&] { f->get_int("big"); }), {"'big'", "int64"}));
  EXPECT_TRUE(mentions(error([&] { f->get_strings("n"); }), {"'n'", "u32"}));
  EXPECT_TRUE(mentions(error([&] { f->get_strings("mixed"); }), {"'mixed'", "element 0", "f32"}));
  EXPECT_TRUE(mentions(error([&] { f->get_ints("mixed"); }), {"'mixed'", "f32", "integer"}));
  EXPECT_TRUE(mentions(error([&] { f->get_floats("words"); }), {"'words'", "string"}));
  EXPECT_TRUE(mentions(error([&] { f->get_int("absent"); }), {f->path(), "'absent'", "missing"}));
  EXPECT_TRUE(mentions(error([&] { f->get_int("s", 1); }), {"'s'"}));
}

TEST(GGUFGetters, ConversionsAndFallbacks) {
  GGUFWriter w;
  w.set("n", int16_t{-3});
  w.set("x", 2.5f);
  w.set("floats", std::vector<float>{0.25f, -4.0f});
  const auto f = open_bytes(w.bytes());
  EXPECT_EQ(f->get_float("n"), -3.0);  // integers widen to float
  EXPECT_EQ(f->get_floats("floats"), (std::vector<double>{0.25, -4.0}));
  EXPECT_EQ(f->get_int("absent", 42), 42);
  EXPECT_EQ(f->get_float("absent", 0.5), 0.5);
  EXPECT_EQ(f->get_bool("absent", true), true);
  EXPECT_EQ(f->get_string("absent", "fallback"), "fallback");
  EXPECT_EQ(f->get_int("n", 42), -3);
  EXPECT_THROW(f->get_int("x", 42), gguf::Error);  // present with the wrong type
  EXPECT_FALSE(f->has("absent"));
  EXPECT_EQ(f->find("absent"), nullptr);
}

// ---------------------------------------------------------------- unreadable paths

TEST(GGUFCorrupt, EmptyFileDirectoryAndMissingPath) {
  EXPECT_TRUE(mentions(open_error({}), {"empty"}));

  TempFile dir("dir.gguf");
  ASSERT_EQ(::mkdir(dir.path().c_str(), 0700), 0);
  try {
    gguf::File f(dir.path());
    ADD_FAILURE() << "a directory was accepted";
  } catch (const gguf::Error& e) {
    EXPECT_TRUE(mentions(std::string(e.what()), {dir.path(), "directory"}));
  }

  const std::string missing = ::testing::TempDir() + "kvlm_no_such_file.gguf";
  try {
    gguf::File f(missing);
    ADD_FAILURE() << "a missing file was accepted";
  } catch (const gguf::Error& e) {
    EXPECT_TRUE(mentions(std::string(e.what()), {missing, "cannot open", "No such file"}));
  }
}

// ---------------------------------------------------------------- corrupt contents

std::vector<uint8_t> prefix(const std::vector<uint8_t>& bytes, size_t n) {
  return {bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n)};
}

TEST(GGUFCorrupt, EveryTruncationIsAnError) {
  GGUFWriter w = sample_writer();
  w.set("more.i64", int64_t{-5});
  w.set("more.f64", 3.25);
  w.set("more.nested", nested_array(3));
  const std::vector<uint8_t> bytes = w.bytes();
  ASSERT_NO_THROW(open_bytes(bytes));
  for (size_t n = 0; n < bytes.size(); ++n) {
    SCOPED_TRACE("truncated to " + std::to_string(n) + " of " + std::to_string(bytes.size()));
    open_error(prefix(bytes, n));
  }
  // Cut inside the header, the metadata and the tensor infos: the message says where.
  EXPECT_TRUE(mentions(open_error(prefix(bytes, 6)), {"truncated", "version", "offset 4"}));
  EXPECT_TRUE(mentions(open_error(prefix(bytes, after(bytes, "sample.scores") + 6)),
                       {"truncated", "'sample.scores'"}));
  EXPECT_TRUE(mentions(open_error(prefix(bytes, after(bytes, "tensor_q8_0") + 2)),
                       {"truncated", "tensor info 3 ('tensor_q8_0')", "n_dims"}));
  EXPECT_TRUE(
      mentions(open_error(prefix(bytes, bytes.size() - 1)), {"'tensor_q4_1'", "past the end"}));
}

TEST(GGUFCorrupt, BadMagic) {
  std::vector<uint8_t> bytes = sample_writer().bytes();
  bytes[3] = 'X';
  EXPECT_TRUE(mentions(open_error(bytes), {"magic", "47 47 55 58"}));
}

TEST(GGUFCorrupt, UnsupportedVersions) {
  for (uint32_t version : {0u, 1u, 4u, 0x03000000u}) {
    GGUFWriter w = sample_writer();
    w.set_version(version);
    EXPECT_TRUE(mentions(open_error(w.bytes()), {"version", std::to_string(version)}));
  }
  GGUFWriter big_endian;
  big_endian.set_version(0x03000000u);
  EXPECT_TRUE(mentions(open_error(big_endian.bytes()), {"big-endian"}));
}

TEST(GGUFCorrupt, HugeStringLengths) {
  const uint64_t huge = uint64_t{1} << 63;
  std::vector<uint8_t> key_length = sample_writer().bytes();
  poke(key_length, find_unique(key_length, "sample.count") - 8, huge);
  EXPECT_TRUE(
      mentions(open_error(key_length), {"truncated", "metadata entry 1", "9223372036854775808"}));

  std::vector<uint8_t> value_length = sample_writer().bytes();
  poke(value_length, after(value_length, "general.architecture") + 4, ~uint64_t{0});
  EXPECT_TRUE(
      mentions(open_error(value_length), {"truncated", "'general.architecture'", "string"}));

  std::vector<uint8_t> name_length = sample_writer().bytes();
  poke(name_length, find_unique(name_length, "tensor_bf16") - 8, huge);
  EXPECT_TRUE(mentions(open_error(name_length), {"truncated", "tensor info 2", "name"}));
}

TEST(GGUFCorrupt, HugeCounts) {
  std::vector<uint8_t> array_count = sample_writer().bytes();
  poke(array_count, after(array_count, "sample.tokens") + 8, uint64_t{1} << 60);
  EXPECT_TRUE(
      mentions(open_error(array_count), {"array count 1152921504606846976", "'sample.tokens'"}));

  // 2^61 strings: count * 8 bytes would wrap around 64 bits.
  std::vector<uint8_t> wrapping = sample_writer().bytes();
  poke(wrapping, after(wrapping, "sample.tokens") + 8, uint64_t{1} << 61);
  EXPECT_TRUE(mentions(open_error(wrapping), {"array count"}));

  std::vector<uint8_t> tensor_count = sample_writer().bytes();
  poke(tensor_count, 8, uint64_t{1} << 62);
  EXPECT_TRUE(
      mentions(open_error(tensor_count), {"tensor count 4611686018427387904", "cannot fit"}));

  std::vector<uint8_t> metadata_count = sample_writer().bytes();
  poke(metadata_count, 16, ~uint64_t{0});
  EXPECT_TRUE(mentions(open_error(metadata_count), {"metadata count", "cannot fit"}));

  // Plausible but wrong counts run off the end instead.
  std::vector<uint8_t> one_more = sample_writer().bytes();
  poke(one_more, 8, uint64_t{7});
  EXPECT_TRUE(mentions(open_error(one_more), {"tensor info 6"}));
}

TEST(GGUFCorrupt, BadNDims) {
  for (uint32_t n_dims : {0u, 5u, 1000u}) {
    std::vector<uint8_t> bytes = sample_writer().bytes();
    poke(bytes, after(bytes, "tensor_f16"), n_dims);
    EXPECT_TRUE(mentions(open_error(bytes), {"'tensor_f16'", "n_dims", std::to_string(n_dims)}));
  }
}

TEST(GGUFCorrupt, DimsProductOverflow) {
  std::vector<uint8_t> bytes = sample_writer().bytes();
  const size_t dims = after(bytes, "tensor_f32") + 4;
  poke(bytes, dims, uint64_t{1} << 33);
  poke(bytes, dims + 8, uint64_t{1} << 32);
  EXPECT_TRUE(mentions(open_error(bytes), {"'tensor_f32'", "overflow"}));

  // The element count fits but the byte count (4 bytes per f32) does not.
  std::vector<uint8_t> byte_overflow = sample_writer().bytes();
  poke(byte_overflow, dims, uint64_t{1} << 31);
  poke(byte_overflow, dims + 8, uint64_t{1} << 32);
  EXPECT_TRUE(mentions(open_error(byte_overflow), {"'tensor_f32'", "overflow"}));
}

TEST(GGUFCorrupt, DimNotAWholeNumberOfBlocks) {
  std::vector<uint8_t> bytes = sample_writer().bytes();
  poke(bytes, after(bytes, "tensor_q4_0") + 4, uint64_t{48});
  EXPECT_TRUE(mentions(open_error(bytes), {"'tensor_q4_0'", "block size 32"}));
}

// The offset field of a tensor info: after the name, n_dims, the dims and the type.
size_t offset_field(const std::vector<uint8_t>& bytes, const std::string& name, size_t n_dims) {
  return after(bytes, name) + 4 + 8 * n_dims + 4;
}

TEST(GGUFCorrupt, BadOffsets) {
  std::vector<uint8_t> past_end = sample_writer().bytes();
  poke(past_end, offset_field(past_end, "tensor_q8_0", 2), uint64_t{1} << 20);
  EXPECT_TRUE(mentions(open_error(past_end), {"'tensor_q8_0'", "past the end"}));

  std::vector<uint8_t> misaligned = sample_writer().bytes();
  poke(misaligned, offset_field(misaligned, "tensor_f16", 1), uint64_t{33});
  EXPECT_TRUE(mentions(open_error(misaligned), {"'tensor_f16'", "offset 33", "alignment 32"}));

  // Aligned, but data start + offset wraps around 64 bits.
  std::vector<uint8_t> wrapping = sample_writer().bytes();
  poke(wrapping, offset_field(wrapping, "tensor_f16", 1), ~uint64_t{31});
  EXPECT_TRUE(mentions(open_error(wrapping), {"'tensor_f16'", "past the end"}));
}

// IQ types (importance-matrix codebooks) are refused by name; the k-quants are read.
TEST(GGUFCorrupt, UnknownTensorType) {
  GGUFWriter w = sample_writer();
  w.add_raw_tensor("blk.0.attn_q.weight", {256}, 16, std::vector<uint8_t>(66));
  EXPECT_TRUE(mentions(open_error(w.bytes()),
                       {"'blk.0.attn_q.weight'", "ggml type 16", "IQ2_XXS", "supported: F32",
                        "Q4_K"}));
  GGUFWriter unnamed;
  unnamed.add_raw_tensor("odd", {4}, 1000, std::vector<uint8_t>(16));
  EXPECT_TRUE(mentions(open_error(unnamed.bytes()), {"'odd'", "ggml type 1000"}));
}

TEST(GGUFCorrupt, UnknownMetadataValueTypes) {
  GGUFWriter w = sample_writer();
  w.set_raw("weird", 13, {0, 0, 0, 0});
  EXPECT_TRUE(mentions(open_error(w.bytes()), {"'weird'", "unknown metadata value type 13"}));

  GGUFWriter element = sample_writer();
  element.set_raw("weird_array", static_cast<uint32_t>(ValueType::Array),
                  {99, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0});
  EXPECT_TRUE(mentions(open_error(element.bytes()), {"'weird_array'", "value type 99"}));
}

TEST(GGUFCorrupt, BoolOtherThanZeroOrOne) {
  std::vector<uint8_t> bytes = sample_writer().bytes();
  poke(bytes, after(bytes, "sample.flag") + 4, uint8_t{2});
  EXPECT_TRUE(mentions(open_error(bytes), {"'sample.flag'", "bool"}));
}

TEST(GGUFCorrupt, BadAlignment) {
  for (uint32_t alignment : {0u, 3u, 48u}) {
    GGUFWriter w = sample_writer();
    w.set_alignment(alignment);
    EXPECT_TRUE(mentions(open_error(w.bytes()),
                         {"general.alignment", "power of two", std::to_string(alignment)}));
  }
  GGUFWriter negative = sample_writer();
  negative.set("general.alignment", int32_t{-32});
  EXPECT_TRUE(mentions(open_error(negative.bytes()), {"general.alignment", "-32"}));
  GGUFWriter text = sample_writer();
  text.set("general.alignment", "32");
  EXPECT_TRUE(mentions(open_error(text.bytes()), {"general.alignment", "string"}));
}

TEST(GGUFCorrupt, DuplicateNames) {
  GGUFWriter tensors = sample_writer();
  tensors.add_tensor("dup_a", {4}, TensorType::F32, wavy(4));
  tensors.add_tensor("dup_b", {4}, TensorType::F32, wavy(4));
  std::vector<uint8_t> bytes = tensors.bytes();
  bytes[find_unique(bytes, "dup_b") + 4] = 'a';
  EXPECT_TRUE(mentions(open_error(bytes), {"duplicate tensor name", "'dup_a'"}));

  GGUFWriter keys = sample_writer();
  keys.set("key.a", uint8_t{1});
  keys.set("key.b", uint8_t{2});
  std::vector<uint8_t> key_bytes = keys.bytes();
  key_bytes[find_unique(key_bytes, "key.b") + 4] = 'a';
  EXPECT_TRUE(mentions(open_error(key_bytes), {"duplicate metadata key", "'key.a'"}));
}

// ---------------------------------------------------------------- sizes

TEST(GGUFSizes, TensorBytesPerType) {
  EXPECT_EQ(gguf::tensor_bytes(TensorType::F32, 10), 40u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::F16, 10), 20u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::BF16, 10), 20u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q8_0, 64), 68u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q4_0, 64), 36u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q4_1, 64), 40u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q5_0, 64), 44u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q5_1, 64), 48u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q2_K, 512), 168u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q3_K, 256), 110u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q4_K, 256), 144u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q5_K, 256), 176u);
  EXPECT_EQ(gguf::tensor_bytes(TensorType::Q6_K, 256), 210u);
  EXPECT_THROW(gguf::tensor_bytes(TensorType::Q4_K, 128), gguf::Error);
  EXPECT_THROW(gguf::tensor_bytes(TensorType::Q4_0, 33), gguf::Error);
  EXPECT_THROW(gguf::tensor_bytes(TensorType::F32, uint64_t{1} << 62), gguf::Error);
  EXPECT_STREQ(gguf::type_name(TensorType::Q4_1), "Q4_1");
  EXPECT_STREQ(gguf::type_name(ValueType::String), "string");
}

}  // namespace
}  // namespace kvlm
