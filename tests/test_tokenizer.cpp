// Tokenizer: Unicode classes, pre-tokenizer splits and BPE merging on hand-made inputs,
// the GGUF dispatch on tiny synthetic files, and parity with Hugging Face `tokenizers` on
// SmolLM2's vocabulary (tests/data/tokenizer_smollm2.json, made by
// tests/golden/make_tokenizer_golden.py).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/gguf_tokenizer.h"
#include "model/gguf.h"
#include "tests/gguf_writer.h"
#include "tests/model_fixture.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace kvlm {
namespace {

using Pieces = std::vector<std::string>;

Pieces split(PreTokenizer kind, const std::string& text) {
  Pieces pieces;
  for (std::string_view piece : pre_tokenize(kind, text)) pieces.emplace_back(piece);
  return pieces;
}

bool is_valid_utf8(const std::string& text) {
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    if (c.status != unicode::Utf8Status::Valid) return false;
    pos += c.length;
  }
  return true;
}

std::string hex(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04X", static_cast<unsigned>(c));
  return buf;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------------------
// Unicode
// ---------------------------------------------------------------------------------------

TEST(Unicode, LetterClass) {
  for (char32_t c : {U'a', U'Z', U'é', U'ß', U'Ω', U'Ж', U'中', U'한', U'م', U'ก', U'𝔘'}) {
    EXPECT_TRUE(unicode::is_letter(c)) << hex(c);
  }
  // Digits, spaces, punctuation, combining marks (Mn) and emoji are not letters.
  for (char32_t c : {U'1', U' ', U'_', U'\'', char32_t{0x0301}, char32_t{0x094D}, U'😀'}) {
    EXPECT_FALSE(unicode::is_letter(c)) << hex(c);
  }
}

TEST(Unicode, NumberClass) {
  // Nd, Nl and No all count: Arabic-Indic 3, full-width 1, superscript 2, one half, Ⅻ.
  for (char32_t c : {U'0', U'9', U'٣', U'１', U'²', U'½', U'Ⅻ', U'𝟙'}) {
    EXPECT_TRUE(unicode::is_number(c)) << hex(c);
  }
  for (char32_t c : {U'a', U'.', U'-', U' ', U'π'}) {
    EXPECT_FALSE(unicode::is_number(c)) << hex(c);
  }
}

TEST(Unicode, WhitespaceClass) {
  for (char32_t c : {0x09u, 0x0Au, 0x0Bu, 0x0Cu, 0x0Du, 0x20u, 0x85u, 0xA0u, 0x1680u, 0x2000u,
                     0x2028u, 0x2029u, 0x202Fu, 0x3000u}) {
    EXPECT_TRUE(unicode::is_whitespace(c)) << hex(c);
  }
  // U+001C..U+001F are whitespace to Python's str.isspace() but not to \s; U+200B (zero
  // width space) is a format character.
  for (char32_t c : {0x1Cu, 0x1Fu, 0x200Bu, 0x00u, 0x78u, 0xFEFFu}) {
    EXPECT_FALSE(unicode::is_whitespace(c)) << hex(c);
  }
}

TEST(Unicode, DecodesWellFormedUtf8) {
  const std::string text = "a\u00e9\u4e2d\U0001F600";
  std::vector<char32_t> cps;
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    ASSERT_EQ(c.status, unicode::Utf8Status::Valid);
    cps.push_back(c.code_point);
    pos += c.length;
  }
  EXPECT_EQ(cps, (std::vector<char32_t>{U'a', 0xE9, 0x4E2D, 0x1F600}));
}

TEST(Unicode, IllFormedSequencesConsumeTheirMaximalSubpart) {
  struct Case {
    std::string bytes;
    unicode::Utf8Status status;
    size_t length;
  };
  const Case cases[] = {
      {"\x80", unicode::Utf8Status::Invalid, 1},           // stray continuation byte
      {"\xC0\x80", unicode::Utf8Status::Invalid, 1},       // overlong lead
      {"\xE0\x80\x80", unicode::Utf8Status::Invalid, 1},   // overlong 3-byte form
      {"\xED\xA0\x80", unicode::Utf8Status::Invalid, 1},   // a surrogate
      {"\xF4\x90\x80\x80", unicode::Utf8Status::Invalid, 1},  // beyond U+10FFFF
      {"\xFF", unicode::Utf8Status::Invalid, 1},
      {"\xE4\xB8x", unicode::Utf8Status::Invalid, 2},      // cut short by an ASCII byte
      {"\xF0\x9F\x98", unicode::Utf8Status::Truncated, 3},  // end of input mid-character
  };
  for (const Case& c : cases) {
    const unicode::Utf8Char decoded = unicode::decode_utf8(c.bytes, 0);
    EXPECT_EQ(decoded.status, c.status) << testing::PrintToString(c.bytes);
    EXPECT_EQ(decoded.length, c.length) << testing::PrintToString(c.bytes);
    EXPECT_EQ(decoded.code_point, unicode::kReplacementCharacter);
  }
}

TEST(Unicode, EncodesAndRejectsSurrogates) {
  std::string out;
  for (char32_t c : {U'a', char32_t{0xE9}, char32_t{0x4E2D}, char32_t{0x1F600}}) {
    unicode::append_utf8(out, c);
  }
  EXPECT_EQ(out, "a\u00e9\u4e2d\U0001F600");
  std::string surrogate;
  unicode::append_utf8(surrogate, 0xD800);
  EXPECT_EQ(surrogate, "\uFFFD");
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizers
// ---------------------------------------------------------------------------------------

TEST(PreTokenizer, Gpt2Splits) {
  const PreTokenizer p = PreTokenizer::Gpt2;
  EXPECT_EQ(split(p, "Hello world's 12345"), (Pieces{"Hello", " world", "'s", " 12345"}));
  // A run of spaces gives its last space to the following word.
  EXPECT_EQ(split(p, "a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(split(p, "a \n b"), (Pieces{"a", " \n", " b"}));
  // ... but keeps it at the end of the text: (?!\S) sees no non-space there.
  EXPECT_EQ(split(p, "x   "), (Pieces{"x", "   "}));
  // Contractions are case-sensitive here, so "'M" is punctuation then a letter.
  EXPECT_EQ(split(p, "don't I'M"), (Pieces{"don", "'t", " I", "'", "M"}));
  EXPECT_EQ(split(p, "naïve café, 日本語!!"), (Pieces{"naïve", " café", ",", " 日本語", "!!"}));
  EXPECT_EQ(split(p, "\tif (x):\n"), (Pieces{"\t", "if", " (", "x", "):", "\n"}));
  EXPECT_EQ(split(p, ""), Pieces{});
}

TEST(PreTokenizer, SmolLMSplitsEveryDigit) {
  const PreTokenizer p = PreTokenizer::SmolLM;
  EXPECT_EQ(split(p, "Hello world's 12345"),
            (Pieces{"Hello", " world", "'s", " ", "1", "2", "3", "4", "5"}));
  EXPECT_EQ(split(p, "3.14"), (Pieces{"3", ".", "1", "4"}));
  // The stretch before a digit ends the text for the GPT-2 pattern: both spaces stay
  // together, where plain GPT-2 would give one to " 1".
  EXPECT_EQ(split(p, "a  1"), (Pieces{"a", "  ", "1"}));
  EXPECT_EQ(split(PreTokenizer::Gpt2, "a  1"), (Pieces{"a", " ", " 1"}));
  // \p{N} is more than ASCII digits.
  EXPECT_EQ(split(p, "x²½"), (Pieces{"x", "²", "½"}));
}

TEST(PreTokenizer, Llama3Splits) {
  const PreTokenizer p = PreTokenizer::Llama3;
  // Numbers are cut into groups of at most three digits.
  EXPECT_EQ(split(p, "Hello world's 12345"), (Pieces{"Hello", " world", "'s", " ", "123", "45"}));
  // Contractions ignore case.
  EXPECT_EQ(split(p, "I'M"), (Pieces{"I", "'M"}));
  EXPECT_EQ(split(p, "'\u017Fx"), (Pieces{"'\u017F", "x"}));  // long s folds to 's'
  EXPECT_EQ(split(PreTokenizer::Gpt2, "'\u017Fx"), (Pieces{"'", "\u017Fx"}));
  // Any single non-newline, non-alphanumeric character may lead a word.
  EXPECT_EQ(split(p, "\tfoo(bar) (baz"), (Pieces{"\tfoo", "(bar", ")", " (", "baz"}));
  // Line breaks stay with the symbols before them, and runs of whitespace end at their
  // last line break.
  EXPECT_EQ(split(p, "foo!!\n\nbar"), (Pieces{"foo", "!!\n\n", "bar"}));
  EXPECT_EQ(split(p, "hello\n\nworld"), (Pieces{"hello", "\n\n", "world"}));
  EXPECT_EQ(split(p, "a  \n  x"), (Pieces{"a", "  \n", " ", " x"}));
}

TEST(PreTokenizer, PiecesCoverTheInputEvenWhenItIsNotUtf8) {
  const std::string text = "ab\xFF" "cd \xE4\xB8 \xF0\x9F\x98";
  for (PreTokenizer p : {PreTokenizer::Gpt2, PreTokenizer::SmolLM, PreTokenizer::Llama3}) {
    std::string joined;
    for (const std::string& piece : split(p, text)) joined += piece;
    EXPECT_EQ(joined, text) << pre_tokenizer_name(p);
  }
  // An invalid byte is punctuation-like: it ends the word before it.
  EXPECT_EQ(split(PreTokenizer::Gpt2, "ab\xFF" "cd"), (Pieces{"ab", "\xFF", "cd"}));
}

TEST(PreTokenizer, NamesFromGguf) {
  EXPECT_EQ(pre_tokenizer_from_name("gpt2"), PreTokenizer::Gpt2);
  EXPECT_EQ(pre_tokenizer_from_name("smollm"), PreTokenizer::SmolLM);
  EXPECT_EQ(pre_tokenizer_from_name("llama-bpe"), PreTokenizer::Llama3);
  testing::internal::CaptureStderr();
  EXPECT_EQ(pre_tokenizer_from_name("mystery-pre"), PreTokenizer::Gpt2);
  const std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(contains(warning, "mystery-pre")) << warning;
}

// ---------------------------------------------------------------------------------------
// BPE on a hand-made vocabulary
// ---------------------------------------------------------------------------------------

// Single-letter tokens a..z, a space ("Ġ" in the byte-level alphabet), then `extra`.
BpeVocab tiny_vocab(const std::vector<std::string>& extra, std::vector<std::string> merges,
                    PreTokenizer pre = PreTokenizer::Gpt2) {
  BpeVocab v;
  for (char c = 'a'; c <= 'z'; ++c) v.tokens.emplace_back(1, c);
  v.tokens.push_back("Ġ");
  v.tokens.insert(v.tokens.end(), extra.begin(), extra.end());
  v.merges = std::move(merges);
  v.pre = pre;
  return v;
}

int32_t id_of(const BpeVocab& v, const std::string& token) {
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == token) return static_cast<int32_t>(i);
  }
  throw std::logic_error("no token " + token);
}

TEST(Bpe, LowestRankMergesFirst) {
  const BpeVocab bc_first = tiny_vocab({"ab", "bc"}, {"b c", "a b"});
  EXPECT_EQ(BpeTokenizer(bc_first).encode("abc", false),
            (std::vector<int32_t>{id_of(bc_first, "a"), id_of(bc_first, "bc")}));
  const BpeVocab ab_first = tiny_vocab({"ab", "bc"}, {"a b", "b c"});
  EXPECT_EQ(BpeTokenizer(ab_first).encode("abc", false),
            (std::vector<int32_t>{id_of(ab_first, "ab"), id_of(ab_first, "c")}));
}

TEST(Bpe, MergesBuildOnEachOtherAndNeverCrossPieces) {
  const BpeVocab v = tiny_vocab({"ab", "abc", "Ġa", "Ġab"}, {"Ġ a", "a b", "ab c", "Ġa b"});
  const BpeTokenizer tok(v);
  EXPECT_EQ(tok.encode("abc ab", false),
            (std::vector<int32_t>{id_of(v, "abc"), id_of(v, "Ġab")}));
  // With "a b" first, " ab" becomes "Ġ" + "ab", and no merge joins those two.
  const BpeVocab ab_first = tiny_vocab({"ab", "Ġa", "Ġab"}, {"a b", "Ġ a", "Ġa b"});
  EXPECT_EQ(BpeTokenizer(ab_first).encode(" ab", false),
            (std::vector<int32_t>{id_of(ab_first, "Ġ"), id_of(ab_first, "ab")}));
  // Repeated pairs merge left to right: "aaa" with "a a" is "aa" + "a".
  const BpeVocab rep = tiny_vocab({"aa"}, {"a a"});
  EXPECT_EQ(BpeTokenizer(rep).encode("aaa", false),
            (std::vector<int32_t>{id_of(rep, "aa"), id_of(rep, "a")}));
}

TEST(Bpe, IgnoreMergesPrefersAWholePieceThatIsAToken) {
  // "abc" is a token, but no merge leads to it.
  BpeVocab v = tiny_vocab({"abc"}, {});
  EXPECT_EQ(BpeTokenizer(v).encode("abc", false).size(), 3u);
  v.ignore_merges = true;
  EXPECT_EQ(BpeTokenizer(v).encode("abc", false), (std::vector<int32_t>{id_of(v, "abc")}));
}

TEST(Bpe, BytesWithoutATokenAreDropped) {
  // The vocabulary has no token for byte 0xFF; like Hugging Face, such bytes are dropped
  // before merging, so the '!'s around it (one piece: all punctuation) still merge.
  const BpeVocab v = tiny_vocab({"!", "!!"}, {"! !"});
  const BpeTokenizer tok(v);
  EXPECT_EQ(tok.encode("!\xFF!", false), (std::vector<int32_t>{id_of(v, "!!")}));
  EXPECT_EQ(tok.encode("\xFF", false), std::vector<int32_t>{});
}

TEST(Bpe, RejectsInconsistentVocabularies) {
  EXPECT_THROW(BpeTokenizer(tiny_vocab({}, {"a b"})), std::runtime_error);  // no "ab"
  EXPECT_THROW(BpeTokenizer(tiny_vocab({"ab"}, {"ab"})), std::runtime_error);
  BpeVocab bad_bos = tiny_vocab({}, {});
  bad_bos.setup.bos_id = 1000;
  EXPECT_THROW(BpeTokenizer(std::move(bad_bos)), std::runtime_error);
  EXPECT_THROW(BpeTokenizer(BpeVocab{}), std::runtime_error);
}

TEST(Bpe, SpecialTokensAndUserDefinedTokens) {
  BpeVocab v = tiny_vocab({"<ctl>", "<c", "xyz!"}, {});
  v.token_types.assign(v.tokens.size(), static_cast<int32_t>(TokenType::Normal));
  v.token_types[id_of(v, "<ctl>")] = static_cast<int32_t>(TokenType::Control);
  v.token_types[id_of(v, "<c")] = static_cast<int32_t>(TokenType::Control);
  v.token_types[id_of(v, "xyz!")] = static_cast<int32_t>(TokenType::UserDefined);
  v.setup.eos_id = id_of(v, "<ctl>");
  const BpeTokenizer tok(v);
  const int32_t ctl = id_of(v, "<ctl>"), user = id_of(v, "xyz!");

  // The longest special token wins over its prefix "<c".
  EXPECT_EQ(tok.encode("a<ctl>b", false),
            (std::vector<int32_t>{id_of(v, "a"), ctl, id_of(v, "b")}));
  EXPECT_EQ(tok.token_bytes(ctl), "<ctl>");
  EXPECT_TRUE(tok.is_special(ctl));
  EXPECT_FALSE(tok.is_special(id_of(v, "a")));
  EXPECT_TRUE(tok.is_end_of_generation(ctl));
  // Without parse_special, control tokens are text ('<' and '>' have no token here, so
  // only the letters remain); user-defined tokens are still matched.
  EXPECT_EQ(tok.encode("<ctl>xyz!", false, /*parse_special=*/false),
            (std::vector<int32_t>{id_of(v, "c"), id_of(v, "t"), id_of(v, "l"), user}));
}

// ---------------------------------------------------------------------------------------
// tokenizer_from_gguf on tiny synthetic files
// ---------------------------------------------------------------------------------------

std::string gguf_error(const test::GGUFWriter& w) {
  test::TempFile file("tokenizer.gguf");
  w.write(file.path());
  const gguf::File f(file.path());
  try {
    tokenizer_from_gguf(f);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

test::GGUFWriter tiny_gguf() {
  const BpeVocab v = tiny_vocab({"ab"}, {"a b"});
  test::GGUFWriter w;
  w.set("tokenizer.ggml.model", "gpt2");
  w.set("tokenizer.ggml.pre", "gpt2");
  w.set("tokenizer.ggml.tokens", v.tokens);
  w.set("tokenizer.ggml.merges", v.merges);
  w.set("tokenizer.ggml.eos_token_id", uint32_t{0});
  return w;
}

TEST(TokenizerFromGguf, ReadsAByteLevelVocabulary) {
  test::GGUFWriter w = tiny_gguf();
  w.set("tokenizer.ggml.bos_token_id", uint32_t{1});
  w.set("tokenizer.ggml.add_bos_token", true);
  test::TempFile file("tokenizer.gguf");
  w.write(file.path());
  const gguf::File f(file.path());
  const auto tok = tokenizer_from_gguf(f);
  EXPECT_EQ(tok->vocab_size(), 28);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_TRUE(tok->add_bos_default());
  EXPECT_EQ(tok->encode("ab", true), (std::vector<int32_t>{1, 27}));
}

TEST(TokenizerFromGguf, ExplainsWhatItCannotRead) {
  // A sentencepiece vocabulary needs scores (tests/test_spm.cpp has the working ones).
  test::GGUFWriter spm = tiny_gguf();
  spm.set("tokenizer.ggml.model", "llama");
  EXPECT_TRUE(contains(gguf_error(spm), "tokenizer.ggml.scores"));

  test::GGUFWriter other = tiny_gguf();
  other.set("tokenizer.ggml.model", "bert");
  EXPECT_TRUE(contains(gguf_error(other), "'bert'"));

  test::GGUFWriter bad_id = tiny_gguf();
  bad_id.set("tokenizer.ggml.eos_token_id", uint32_t{500});
  EXPECT_TRUE(contains(gguf_error(bad_id), "tokenizer.ggml.eos_token_id"));

  test::GGUFWriter bad_merge = tiny_gguf();
  bad_merge.set("tokenizer.ggml.merges", std::vector<std::string>{"a q!"});
  EXPECT_TRUE(contains(gguf_error(bad_merge), "q!"));
}

// ---------------------------------------------------------------------------------------
// SmolLM2: parity with the reference, special tokens, streaming
// ---------------------------------------------------------------------------------------

class SmolLM2Tokenizer : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!kvlm::test::have_model()) return;
    const gguf::File file(kvlm::test::model_path());
    tok_ = tokenizer_from_gguf(file);
  }
  static void TearDownTestSuite() { tok_.reset(); }

  void SetUp() override {
    if (!tok_) {
      GTEST_SKIP() << "needs the SmolLM2 model at " << kvlm::test::model_path()
                   << " (KVLM_MODEL); `make model` fetches it";
    }
  }

  const Tokenizer& tok() const { return *tok_; }
  std::vector<int32_t> encode(const std::string& text) const { return tok_->encode(text, false); }

  static inline std::unique_ptr<Tokenizer> tok_;
};

nlohmann::json load_golden() {
  const std::string path = kvlm::test::data_path("tokenizer_smollm2.json");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (run from the repository root)");
  return nlohmann::json::parse(in);
}

TEST_F(SmolLM2Tokenizer, Metadata) {
  EXPECT_EQ(tok().vocab_size(), 49152);
  EXPECT_EQ(tok().bos_id(), 1);
  EXPECT_EQ(tok().eos_id(), 2);
  EXPECT_FALSE(tok().add_bos_default());
  EXPECT_TRUE(tok().is_end_of_generation(2));  // <|im_end|>
  EXPECT_TRUE(tok().is_end_of_generation(0));  // <|endoftext|>
  EXPECT_FALSE(tok().is_end_of_generation(1));
  EXPECT_TRUE(contains(tok().describe(), "smollm")) << tok().describe();
  EXPECT_THROW(tok().token_bytes(49152), std::out_of_range);
}

TEST_F(SmolLM2Tokenizer, MatchesHuggingFaceTokenizers) {
  const nlohmann::json golden = load_golden();
  ASSERT_EQ(golden["tokenizer"]["n_tokens"].get<int>(), tok().vocab_size());
  int checked = 0;
  for (const auto& c : golden["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(encode(text), ids) << "text: " << testing::PrintToString(text);
    const std::string decoded = c.contains("decoded") ? c["decoded"].get<std::string>() : text;
    EXPECT_EQ(tok().decode(ids), decoded) << "text: " << testing::PrintToString(text);
    ++checked;
  }
  EXPECT_GE(checked, 50);
}

TEST_F(SmolLM2Tokenizer, SpecialTokensInText) {
  const std::string chat = "<|im_start|>user\nhi<|im_end|>";
  const std::vector<int32_t> ids = encode(chat);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ(tok().decode(ids), chat);

  const std::vector<int32_t> plain = tok().encode(chat, false, /*parse_special=*/false);
  for (int32_t id : plain) EXPECT_FALSE(tok().is_special(id)) << id;
  EXPECT_GT(plain.size(), ids.size());
  EXPECT_EQ(tok().decode(plain), chat);

  EXPECT_EQ(tok().encode("hi", /*add_bos=*/true).front(), tok().bos_id());
}

TEST_F(SmolLM2Tokenizer, StreamDecoderOnlyEmitsWholeCharacters) {
  const std::string text = "Emoji 😀👍🏽 and 日本語, 한국어 👨‍👩‍👧‍👦! café";
  StreamDecoder stream(tok());
  std::string joined;
  bool held_back = false;
  for (int32_t id : encode(text)) {
    const std::string chunk = stream.push(id);
    EXPECT_TRUE(is_valid_utf8(chunk)) << testing::PrintToString(chunk);
    held_back |= chunk.empty();
    joined += chunk;
  }
  joined += stream.flush();
  EXPECT_EQ(joined, text);
  EXPECT_TRUE(held_back) << "expected some character to span several tokens";
}

TEST_F(SmolLM2Tokenizer, StreamDecoderReplacesBrokenCharacters) {
  // The text ends inside a 4-byte character: flush turns the rest into one U+FFFD.
  StreamDecoder cut(tok());
  std::string out;
  for (int32_t id : encode("ok \xF0\x9F\x98")) out += cut.push(id);
  EXPECT_EQ(out, "ok ");
  EXPECT_EQ(cut.flush(), "\uFFFD");
  EXPECT_EQ(cut.flush(), "");

  // A byte that can never start a character is replaced at once.
  StreamDecoder stray(tok());
  out.clear();
  for (int32_t id : encode("a\x80z")) out += stray.push(id);
  EXPECT_EQ(out + stray.flush(), "a\uFFFDz");
}

TEST_F(SmolLM2Tokenizer, EncodesAnEightThousandTokenPrompt) {
  const std::string paragraph =
      "The tokenizer splits text into pieces and merges bytes by rank. Numbers such as "
      "3.14159 and 2024 are spelled digit by digit. 日本語のテキスト, 한국어 문장, "
      "émojis 😀👍🏽, and code:\n\tfor (int i = 0; i < n; ++i) { sum += a[i]; }\n\n";
  const size_t per_paragraph = encode(paragraph).size();
  std::string text;
  while (text.size() / paragraph.size() * per_paragraph < 8192) text += paragraph;

  const auto start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = encode(text);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::cout << "[ info     ] encoded " << ids.size() << " tokens (" << text.size()
            << " bytes) in " << ms << " ms\n";
  EXPECT_GE(ids.size(), 8192u);
  EXPECT_EQ(tok().decode(ids), text);
}

}  // namespace
}  // namespace kvlm
