// safetensors reader: valid files read back exactly; every corruption (of a single file or
// of a sharded set) ends in a std::runtime_error naming the file and, where there is one,
// the tensor; never a crash (run under ASan/UBSan too).
#include <gtest/gtest.h>

#include <cstring>
#include <initializer_list>

#include "model/dequant.h"
#include "model/safetensors.h"
#include "tests/gguf_writer.h"
#include "tests/safetensors_writer.h"

namespace kvlm {
namespace {

using nlohmann::json;
using test::SafetensorsWriter;
using test::TempDir;

bool mentions(const std::string& message, std::initializer_list<std::string> needles) {
  for (const std::string& n : needles)
    if (message.find(n) == std::string::npos) {
      ADD_FAILURE() << "message lacks \"" << n << "\": " << message;
      return false;
    }
  return true;
}

std::vector<float> values(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = scale * float(int(i % 7) - 3) / 4;  // exact in f16/bf16
  return v;
}

SafetensorsWriter sample() {
  SafetensorsWriter w;
  w.add("a.weight", "F32", {3, 4}, values(12, 1.5f));
  w.add("b.weight", "F16", {5}, values(5, 2));
  w.add("c.weight", "BF16", {2, 2, 2}, values(8, -1));
  w.add("scalar", "F32", {}, {7.25f});
  w.header()["__metadata__"] = {{"format", "pt"}};
  return w;
}

// Writes the bytes as one file and returns the reader's error (which must start with the path).
std::string open_error(const std::vector<uint8_t>& bytes) {
  test::TempFile file("corrupt.safetensors");
  test::write_file(file.path(), bytes);
  try {
    safetensors::File f(file.path());
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind(file.path() + ": ", 0), 0u) << "does not start with the path: " << message;
    return message;
  }
  ADD_FAILURE() << "a corrupt file (" << bytes.size() << " bytes) was accepted";
  return "";
}

// The sample's header with one tensor entry replaced.
std::string with_entry(const json& entry) {
  SafetensorsWriter w = sample();
  w.header()["a.weight"] = entry;
  return open_error(w.bytes());
}

TEST(Safetensors, ValidFileReadsBackExactly) {
  test::TempFile file("valid.safetensors");
  sample().write(file.path());
  safetensors::File f(file.path());
  ASSERT_EQ(f.tensors().size(), 4u);  // __metadata__ is not a tensor
  struct Expected { const char* name; gguf::TensorType type; std::vector<uint64_t> shape; std::vector<float> v; };
  const Expected expected[] = {
      {"a.weight", gguf::TensorType::F32, {3, 4}, values(12, 1.5f)},
      {"b.weight", gguf::TensorType::F16, {5}, values(5, 2)},
      {"c.weight", gguf::TensorType::BF16, {2, 2, 2}, values(8, -1)},
      {"scalar", gguf::TensorType::F32, {}, {7.25f}},
  };
  for (const Expected& e : expected) {
    auto it = std::find_if(f.tensors().begin(), f.tensors().end(),
                           [&](const TensorView& t) { return t.name == e.name; });
    ASSERT_NE(it, f.tensors().end()) << e.name;
    EXPECT_EQ(it->type, e.type) << e.name;
    EXPECT_EQ(it->shape, e.shape) << e.name;
    ASSERT_EQ(it->n_elements, e.v.size()) << e.name;
    std::vector<float> got(e.v.size());
    dequantize(it->type, it->data, got.data(), got.size());
    EXPECT_EQ(got, e.v) << e.name;
  }
}

TEST(SafetensorsCorrupt, EveryTruncationIsAnError) {
  const std::vector<uint8_t> bytes = sample().bytes();
  for (size_t n = 0; n < bytes.size(); n++) {
    SCOPED_TRACE("truncated to " + std::to_string(n) + " of " + std::to_string(bytes.size()));
    open_error({bytes.begin(), bytes.begin() + ptrdiff_t(n)});
  }
  EXPECT_TRUE(mentions(open_error({1, 2, 3}), {"too short"}));
  EXPECT_TRUE(mentions(open_error({bytes.begin(), bytes.begin() + 20}), {"header length", "past the end"}));
  EXPECT_TRUE(mentions(open_error({bytes.begin(), bytes.end() - 1}), {"past the end of the data section"}));
}

TEST(SafetensorsCorrupt, HugeHeaderLengthIsRefusedBeforeReading) {
  std::vector<uint8_t> bytes = sample().bytes();
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(bytes.data(), &huge, 8);
  EXPECT_TRUE(mentions(open_error(bytes), {"header length 1099511627776", "limit"}));
}

TEST(SafetensorsCorrupt, HeaderThatIsNotAJsonObject) {
  EXPECT_TRUE(mentions(open_error(test::safetensors_bytes("{\"a\": [1, 2", {})), {"not valid JSON"}));
  EXPECT_TRUE(mentions(open_error(test::safetensors_bytes("\xff\xfe", {})), {"not valid JSON"}));
  EXPECT_TRUE(mentions(open_error(test::safetensors_bytes("[1, 2]", {})), {"an array", "expected a JSON object"}));
  EXPECT_TRUE(mentions(open_error(test::safetensors_bytes(std::string(200, '[') + std::string(200, ']'), {})),
                       {"nested more than"}));
}

TEST(SafetensorsCorrupt, MalformedEntriesNameTheTensor) {
  EXPECT_TRUE(mentions(with_entry(5), {"tensor 'a.weight'", "expected an object"}));
  EXPECT_TRUE(mentions(with_entry({{"shape", {3, 4}}, {"data_offsets", {0, 48}}}),
                       {"tensor 'a.weight'", "'dtype' is missing"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"data_offsets", {0, 48}}}), {"'shape' is missing"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 4}}}), {"'data_offsets' is missing"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", 32}, {"shape", {3, 4}}, {"data_offsets", {0, 48}}}),
                       {"dtype is an integer"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", "3x4"}, {"data_offsets", {0, 48}}}),
                       {"shape is a string"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 4}}, {"data_offsets", json::array({0})}}),
                       {"not a pair"}));
}

TEST(SafetensorsCorrupt, DtypesOtherThanFloatsAreNamed) {
  EXPECT_TRUE(mentions(with_entry({{"dtype", "I64"}, {"shape", {6}}, {"data_offsets", {0, 48}}}),
                       {"tensor 'a.weight'", "dtype I64 is not supported", "F32, F16, BF16"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "Q4"}, {"shape", {3, 4}}, {"data_offsets", {0, 48}}}),
                       {"tensor 'a.weight'", "unknown dtype 'Q4'"}));
}

TEST(SafetensorsCorrupt, OffsetsOutsideTheDataOrInconsistentWithTheShape) {
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 4}}, {"data_offsets", {1000, 1048}}}),
                       {"tensor 'a.weight'", "past the end of the data section"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 4}}, {"data_offsets", {48, 0}}}),
                       {"end before they begin"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 5}}, {"data_offsets", {0, 48}}}),
                       {"tensor 'a.weight'", "hold 48 bytes", "needs 60"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3, 4}}, {"data_offsets", {-8, 40}}}),
                       {"not a pair of integers >= 0"}));
}

TEST(SafetensorsCorrupt, BadShapes) {
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {-3, -4}}, {"data_offsets", {0, 48}}}),
                       {"tensor 'a.weight'", "not an integer >= 0"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {3.5, 4}}, {"data_offsets", {0, 48}}}),
                       {"not an integer >= 0"}));
  const uint64_t big = uint64_t{1} << 40;
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {big, big}}, {"data_offsets", {0, 48}}}),
                       {"more than 2^64 elements"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", {big, 1 << 23}}, {"data_offsets", {0, 48}}}),
                       {"more than 2^64 bytes"}));
  EXPECT_TRUE(mentions(with_entry({{"dtype", "F32"}, {"shape", json::array({1, 1, 1, 1, 1, 1, 1, 1, 3, 4})},
                                   {"data_offsets", {0, 48}}}),
                       {"10 dimensions"}));
}

TEST(SafetensorsCorrupt, OverlappingTensors) {
  SafetensorsWriter w = sample();
  w.header()["b.weight"]["data_offsets"] = {40, 50};  // inside a.weight's [0, 48)
  EXPECT_TRUE(mentions(open_error(w.bytes()), {"'a.weight'", "'b.weight'", "overlap"}));
  // An empty tensor occupies no bytes: it overlaps nothing, and hides no overlap after it.
  SafetensorsWriter empty = sample();
  empty.header()["aa.empty"] = {{"dtype", "F16"}, {"shape", {0, 4}}, {"data_offsets", {10, 10}}};
  test::TempFile file("empty.safetensors");
  empty.write(file.path());
  EXPECT_EQ(safetensors::File(file.path()).tensors().size(), 5u);
  empty.header()["b.weight"]["data_offsets"] = {40, 50};
  EXPECT_TRUE(mentions(open_error(empty.bytes()), {"'a.weight'", "'b.weight'", "overlap"}));
}

// ---------------------------------------------------------------- sharded sets

// Two shards and an index that maps every tensor to its shard.
struct ShardedDir {
  TempDir dir{"sharded"};
  json index;
  ShardedDir() {
    SafetensorsWriter one, two;
    one.add("x", "F32", {2}, {1, 2});
    two.add("y", "BF16", {3}, {1, 2, 3});
    one.write(dir.file("model-00001-of-00002.safetensors"));
    two.write(dir.file("model-00002-of-00002.safetensors"));
    index = {{"metadata", {{"total_size", 14}}},
             {"weight_map",
              {{"x", "model-00001-of-00002.safetensors"}, {"y", "model-00002-of-00002.safetensors"}}}};
  }
  std::string error() {
    test::write_text(dir.file("model.safetensors.index.json"), index.dump());
    try {
      safetensors::ShardSet set(dir.path());
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted: " << index.dump();
    return "";
  }
};

TEST(SafetensorsShards, IndexOpensEveryShard) {
  ShardedDir d;
  test::write_text(d.dir.file("model.safetensors.index.json"), d.index.dump());
  safetensors::ShardSet set(d.dir.path());
  EXPECT_STREQ(set.source(), "model.safetensors.index.json");
  ASSERT_EQ(set.files().size(), 2u);
  EXPECT_EQ(set.files()[1]->tensors().at(0).name, "y");
  EXPECT_EQ(set.total_bytes(), set.files()[0]->file_size() + set.files()[1]->file_size());
}

TEST(SafetensorsShards, BrokenIndexesAreClearErrors) {
  {
    ShardedDir d;
    d.index["weight_map"]["z"] = "model-00003-of-00003.safetensors";
    EXPECT_TRUE(mentions(d.error(), {"model.safetensors.index.json", "model-00003-of-00003.safetensors",
                                     "not in"}));
  }
  {
    ShardedDir d;
    d.index["weight_map"]["x"] = "model-00002-of-00002.safetensors";
    EXPECT_TRUE(mentions(d.error(), {"tensor 'x'", "does not hold it"}));
  }
  {
    ShardedDir d;
    SafetensorsWriter dup;
    dup.add("x", "F32", {1}, {5});
    dup.write(d.dir.file("model-00002-of-00002.safetensors"));
    EXPECT_TRUE(mentions(d.error(), {"tensor 'x'", "two shards"}));
  }
  {
    ShardedDir d;
    d.index["weight_map"]["x"] = "../../etc/passwd";
    EXPECT_TRUE(mentions(d.error(), {"'../../etc/passwd'", "not a file name in this directory"}));
  }
  {
    ShardedDir d;
    d.index["weight_map"]["x"] = 1;
    EXPECT_TRUE(mentions(d.error(), {"weight_map entry 'x'", "an integer"}));
  }
  {
    ShardedDir d;
    d.index = {{"metadata", {}}};
    EXPECT_TRUE(mentions(d.error(), {"no 'weight_map' object"}));
  }
  {
    ShardedDir d;
    d.index = {{"weight_map", json::object()}};
    EXPECT_TRUE(mentions(d.error(), {"weight_map is empty"}));
  }
  {
    ShardedDir d;
    test::write_text(d.dir.file("model.safetensors.index.json"), "{\"weight_map\": ");
    try {
      safetensors::ShardSet set(d.dir.path());
      ADD_FAILURE() << "accepted a truncated index";
    } catch (const std::runtime_error& e) {
      EXPECT_TRUE(mentions(e.what(), {"model.safetensors.index.json", "not valid JSON"}));
    }
  }
}

TEST(SafetensorsShards, SingleFileWinsAndAnEmptyDirectoryIsAnError) {
  ShardedDir d;
  test::write_text(d.dir.file("model.safetensors.index.json"), "not even json");
  sample().write(d.dir.file("model.safetensors"));
  safetensors::ShardSet set(d.dir.path());  // the broken index is never read
  EXPECT_STREQ(set.source(), "model.safetensors");
  EXPECT_EQ(set.files().at(0)->tensors().size(), 4u);

  TempDir empty("empty");
  try {
    safetensors::ShardSet none(empty.path());
    ADD_FAILURE() << "an empty directory was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(mentions(e.what(), {empty.path(), "neither model.safetensors nor"}));
  }
}

}  // namespace
}  // namespace kvlm
