// Sentencepiece: the ModelProto writer and reader, models built from GGUF vocabularies,
// and parity with the sentencepiece library on the tiny Llama-2-style model of
// tests/data/hf (tests/data/hf_tokenizers.json, made by tests/golden/make_hf_golden.py),
// read both from tokenizer.model and from its GGUF conversion.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "model/gguf_tokenizer.h"
#include "model/gguf.h"
#include "tests/gguf_writer.h"
#include "tests/model_fixture.h"
#include "tokenizer/spm.h"
#include "tokenizer/spm_proto.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {
namespace {

using Ids = std::vector<int32_t>;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// ---------------------------------------------------------------------------------------
// A hand-made vocabulary: <unk> <s> </s>, the 256 byte pieces, then a few pieces whose
// scores decide the merges (sentencepiece BPE joins the pair whose result scores highest).
// ---------------------------------------------------------------------------------------
constexpr int32_t kBytes = 3;  // id of <0x00>
constexpr int32_t kSpace = kBytes + 256, kA = kSpace + 1, kB = kSpace + 2, kSpaceA = kSpace + 3,
                  kAB = kSpace + 4, kUser = kSpace + 5;

struct TinyVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;

  void add(const std::string& text, float score, TokenType type) {
    tokens.push_back(text);
    scores.push_back(score);
    types.push_back(static_cast<int32_t>(type));
  }
};

TinyVocab tiny_vocab(float ab_score) {
  TinyVocab v;
  v.add("<unk>", 0, TokenType::Unknown);
  v.add("<s>", 0, TokenType::Control);
  v.add("</s>", 0, TokenType::Control);
  for (int byte = 0; byte < 256; ++byte) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", byte);
    v.add(piece, 0, TokenType::Byte);
  }
  v.add("\xE2\x96\x81", -1, TokenType::Normal);  // ▁
  v.add("a", -2, TokenType::Normal);
  v.add("b", -3, TokenType::Normal);
  v.add(
      "\xE2\x96\x81"
      "a",
      -4, TokenType::Normal);
  v.add("ab", ab_score, TokenType::Normal);
  v.add("<tool>", 0, TokenType::UserDefined);
  return v;
}

test::GGUFWriter spm_gguf(const TinyVocab& v) {
  test::GGUFWriter w;
  w.set("tokenizer.ggml.model", "llama");
  w.set("tokenizer.ggml.tokens", v.tokens);
  w.set("tokenizer.ggml.scores", v.scores);
  w.set("tokenizer.ggml.token_type", v.types);
  w.set("tokenizer.ggml.bos_token_id", uint32_t{1});
  w.set("tokenizer.ggml.eos_token_id", uint32_t{2});
  w.set("tokenizer.ggml.unknown_token_id", uint32_t{0});
  return w;
}

std::unique_ptr<Tokenizer> from_gguf(const test::GGUFWriter& w) {
  test::TempFile file("spm.gguf");
  w.write(file.path());
  const gguf::File f(file.path());
  return tokenizer_from_gguf(f);
}

std::string gguf_error(const test::GGUFWriter& w) {
  try {
    from_gguf(w);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

SpmModel model_of(const TinyVocab& v) {
  SpmModel m;
  m.model_type = SpmModelType::Bpe;
  m.byte_fallback = true;
  m.normalizer_name = "identity";
  m.remove_extra_whitespaces = false;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    m.pieces.push_back({v.tokens[i], v.scores[i], static_cast<TokenType>(v.types[i])});
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// The wire format
// ---------------------------------------------------------------------------------------

TEST(SpmProto, WritesTheWireFormat) {
  SpmModel m;
  m.pieces.push_back({"a", 1.0f, TokenType::Control});
  m.pad_id = -1;
  const std::string bytes = serialize_spm_model(m);
  // Field 1 (pieces), length-delimited: tag 0x0A, length 10, then the piece: text "a"
  // (0x0A 0x01 'a'), score 1.0f as fixed32 (0x15, 00 00 80 3F), type 3 (0x18 0x03).
  const std::string piece = std::string(
      "\x0A\x0A\x0A\x01"
      "a\x15\x00\x00\x80\x3F\x18\x03",
      12);
  EXPECT_EQ(bytes.substr(0, piece.size()), piece);
  // A negative int32 is sign-extended to ten varint bytes: pad_id = -1 is field 43.
  const std::string pad = std::string("\xD8\x02") + std::string(9, '\xFF') + "\x01";
  EXPECT_TRUE(contains(bytes, pad));
}

TEST(SpmProto, ReadsBackWhatItWrites) {
  SpmModel m = model_of(tiny_vocab(-5));
  m.bos_id = 1;
  m.eos_id = 2;
  m.pad_id = -1;
  m.add_dummy_prefix = false;
  const SpmModel back = parse_spm_model(serialize_spm_model(m));
  ASSERT_EQ(back.pieces.size(), m.pieces.size());
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    EXPECT_EQ(back.pieces[i].text, m.pieces[i].text);
    EXPECT_EQ(back.pieces[i].score, m.pieces[i].score);
    EXPECT_EQ(back.pieces[i].type, m.pieces[i].type);
  }
  EXPECT_EQ(back.model_type, SpmModelType::Bpe);
  EXPECT_TRUE(back.byte_fallback);
  EXPECT_EQ(back.pad_id, -1);
  EXPECT_EQ(back.normalizer_name, "identity");
  EXPECT_FALSE(back.add_dummy_prefix);
  EXPECT_FALSE(back.remove_extra_whitespaces);
}

TEST(SpmProto, RejectsMalformedBytes) {
  const std::string good = serialize_spm_model(model_of(tiny_vocab(-5)));
  for (size_t cut : {size_t{1}, size_t{5}, good.size() / 2, good.size() - 1}) {
    EXPECT_THROW(parse_spm_model(good.substr(0, cut)), std::runtime_error) << cut;
  }
  EXPECT_THROW(parse_spm_model(std::string("\x0B", 1)), std::runtime_error);   // wire type 3
  EXPECT_THROW(parse_spm_model(std::string(12, '\xFF')), std::runtime_error);  // endless varint
}

TEST(SpmProto, TheLibraryRejectsAModelWithoutUnknownPiece) {
  SpmModel m = model_of(tiny_vocab(-5));
  m.pieces[0].type = TokenType::Normal;
  EXPECT_THROW(SpmTokenizer(serialize_spm_model(m), {}), std::runtime_error);
}

// ---------------------------------------------------------------------------------------
// From a GGUF vocabulary
// ---------------------------------------------------------------------------------------

TEST(SpmFromGguf, ScoresDecideTheMerges) {
  // "ab" -> "▁ab": "▁a" (-4) outscores "ab" (-5), and "▁ab" is no piece.
  EXPECT_EQ(from_gguf(spm_gguf(tiny_vocab(-5)))->encode("ab", false), (Ids{kSpaceA, kB}));
  // With "ab" at -3.5 it wins instead.
  EXPECT_EQ(from_gguf(spm_gguf(tiny_vocab(-3.5)))->encode("ab", false), (Ids{kSpace, kAB}));
}

TEST(SpmFromGguf, ByteFallbackLeadingSpaceAndBos) {
  const auto tok = from_gguf(spm_gguf(tiny_vocab(-5)));
  EXPECT_TRUE(tok->add_bos_default()) << "llama.cpp's default for 'llama' vocabularies";
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->is_end_of_generation(2));
  // 'c' and 'é' have no piece: their UTF-8 bytes are spelled with byte pieces.
  EXPECT_EQ(tok->encode("ac\u00e9", true),
            (Ids{1, kSpaceA, kBytes + 'c', kBytes + 0xC3, kBytes + 0xA9}));
  EXPECT_EQ(tok->token_bytes(kSpaceA), " a");
  EXPECT_EQ(tok->token_bytes(kBytes + 0xC3), "\xC3");
  EXPECT_EQ(tok->token_bytes(1), "<s>");
  // decode drops the space that encode put in front, as sentencepiece does.
  EXPECT_EQ(tok->decode({kSpaceA, kBytes + 'c'}), "ac");
  EXPECT_EQ(tok->decode({1, kSpaceA}), "<s>a");
  EXPECT_EQ(tok->decode({kBytes + ' ', kA}), " a") << "a byte piece is not the added space";

  test::GGUFWriter no_prefix = spm_gguf(tiny_vocab(-5));
  no_prefix.set("tokenizer.ggml.add_space_prefix", false);
  no_prefix.set("tokenizer.ggml.add_bos_token", false);
  const auto plain = from_gguf(no_prefix);
  EXPECT_EQ(plain->encode("ab", plain->add_bos_default()), (Ids{kAB}));
  EXPECT_EQ(plain->decode({kSpaceA}), " a");
  EXPECT_TRUE(contains(plain->describe(), "no leading space")) << plain->describe();
}

TEST(SpmFromGguf, SpecialTokensInText) {
  const auto tok = from_gguf(spm_gguf(tiny_vocab(-5)));
  // Control tokens are cut out with parse_special; each stretch around them is encoded on
  // its own, so it gets its own leading space.
  EXPECT_EQ(tok->encode("a</s>a", false), (Ids{kSpaceA, 2, kSpaceA}));
  const Ids as_text = tok->encode("a</s>a", false, /*parse_special=*/false);
  EXPECT_EQ(std::count(as_text.begin(), as_text.end(), 2), 0);
  EXPECT_EQ(tok->decode(as_text), "a</s>a");
  // User-defined pieces are matched by sentencepiece itself, either way.
  for (bool parse_special : {true, false}) {
    const Ids ids = tok->encode("a<tool>", false, parse_special);
    EXPECT_EQ(ids, (Ids{kSpaceA, kUser}));
  }
  EXPECT_TRUE(tok->is_special(kUser));
  EXPECT_TRUE(tok->is_special(1));
  EXPECT_FALSE(tok->is_special(kA));
  EXPECT_FALSE(tok->is_special(kBytes));
}

TEST(SpmFromGguf, ExplainsWhatIsWrong) {
  test::GGUFWriter no_scores = spm_gguf(tiny_vocab(-5));
  no_scores.set("tokenizer.ggml.scores", std::vector<float>{1.0f});
  EXPECT_TRUE(contains(gguf_error(no_scores), "tokenizer.ggml.scores"));

  TinyVocab bad_type = tiny_vocab(-5);
  bad_type.types[kA] = 9;
  EXPECT_TRUE(contains(gguf_error(spm_gguf(bad_type)), "token_type[" + std::to_string(kA) + "]"));

  TinyVocab no_unknown = tiny_vocab(-5);
  no_unknown.types[0] = static_cast<int32_t>(TokenType::Normal);
  const std::string error = gguf_error(spm_gguf(no_unknown));
  EXPECT_TRUE(contains(error, "spm.gguf") && contains(error, "sentencepiece")) << error;

  test::GGUFWriter bad_bos = spm_gguf(tiny_vocab(-5));
  bad_bos.set("tokenizer.ggml.bos_token_id", uint32_t{100000});
  EXPECT_TRUE(contains(gguf_error(bad_bos), "tokenizer.ggml.bos_token_id"));
}

// ---------------------------------------------------------------------------------------
// Parity with the sentencepiece library
// ---------------------------------------------------------------------------------------

nlohmann::json golden_spm() {
  const std::string path = test::data_path("hf_tokenizers.json");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (run from the repository root)");
  return nlohmann::json::parse(in)["spm"];
}

// The reference is sentencepiece's encode with bos in front; '<s>' written in the text is
// text to it, so kvlm encodes without parse_special here. Its decode drops control tokens.
void expect_parity(const Tokenizer& tok, const nlohmann::json& golden) {
  int checked = 0;
  for (const auto& c : golden["cases"]) {
    const std::string text = c["text"];
    const Ids ids = c["ids"];
    EXPECT_EQ(tok.encode(text, tok.add_bos_default(), /*parse_special=*/false), ids)
        << "text: " << testing::PrintToString(text);
    ASSERT_EQ(ids.front(), tok.bos_id());
    EXPECT_EQ(tok.decode(Ids(ids.begin() + 1, ids.end())), c["decoded"].get<std::string>())
        << "text: " << testing::PrintToString(text);
    ++checked;
  }
  EXPECT_GE(checked, 90);
}

TEST(SpmParity, TokenizerModelFileMatchesSentencepiece) {
  const nlohmann::json golden = golden_spm();
  for (const auto& file : golden["files"]) {
    const std::string dir = test::data_path(file.get<std::string>());
    SCOPED_TRACE(dir);
    const auto tok = tokenizer_from_hf_directory(dir.substr(0, dir.rfind('/')));
    EXPECT_TRUE(contains(tok->describe(), "tokenizer.model")) << tok->describe();
    expect_parity(*tok, golden);
  }
}

TEST(SpmParity, GgufBuiltModelMatchesSentencepiece) {
  const gguf::File file(test::data_path("hf/llama2-spm.gguf"));
  const auto tok = tokenizer_from_gguf(file);
  EXPECT_TRUE(contains(tok->describe(), "sentencepiece BPE")) << tok->describe();
  expect_parity(*tok, golden_spm());
}

TEST(SpmParity, GgufBuiltModelHasTheFilesPieces) {
  const SpmModel original =
      parse_spm_model(read_file(test::data_path("hf/llama2-spm/tokenizer.model")));
  const gguf::File file(test::data_path("hf/llama2-spm.gguf"));
  const auto tok = tokenizer_from_gguf(file);
  ASSERT_EQ(tok->vocab_size(), static_cast<int>(original.pieces.size()));
  EXPECT_TRUE(original.byte_fallback);
  EXPECT_EQ(original.model_type, SpmModelType::Bpe);
  int bytes = 0;
  for (size_t i = 0; i < original.pieces.size(); ++i) {
    const SpmPiece& p = original.pieces[i];
    if (p.type != TokenType::Byte) continue;
    EXPECT_EQ(tok->token_bytes(static_cast<int32_t>(i)).size(), 1u) << p.text;
    ++bytes;
  }
  EXPECT_EQ(bytes, 256);
}

TEST(SpmParity, SpecialTokensSplitTheText) {
  const auto tok = tokenizer_from_hf_directory(test::data_path("hf/llama2-spm"));
  const int32_t bos = tok->bos_id(), eos = tok->eos_id();
  auto plain = [&](const std::string& text) { return tok->encode(text, false, false); };
  // "<s>Hello</s>": what the sentencepiece library gives for "Hello", between the two ids
  // (Hugging Face's legacy Llama tokenizer, as hf_ids of the golden file show, agrees).
  Ids expected = {bos};
  for (int32_t id : plain("Hello")) expected.push_back(id);
  expected.push_back(eos);
  EXPECT_EQ(tok->encode("<s>Hello</s>", false), expected);
  Ids with_bos = {bos};
  with_bos.insert(with_bos.end(), expected.begin(), expected.end());
  const nlohmann::json golden = golden_spm();
  for (const auto& c : golden["cases"]) {
    if (c["text"] == "<s>Hello</s>") {
      EXPECT_EQ(c["hf_ids"].get<Ids>(), with_bos);
    }
  }
  Ids around = plain("Hello ");
  around.push_back(bos);
  for (int32_t id : plain(" world")) around.push_back(id);
  EXPECT_EQ(tok->encode("Hello <s> world", false), around);
}

}  // namespace
}  // namespace kvlm
