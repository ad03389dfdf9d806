// Chat templates: kvlm's layouts against the published Jinja templates rendered by jinja2
// (tests/data/chat_templates.json, made by tests/golden/make_template_golden.py), family
// detection, the --template override, multi-turn continuation and BOS placement.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "chat_template.h"
#include "tests/model_fixture.h"
#include "tokenizer/bpe.h"

namespace kvlm {
namespace {

// A byte-level tokenizer whose only use is to carry bos/eos texts: single letters, a
// space, and the given special tokens as control tokens.
BpeTokenizer tokenizer_with(const std::string& bos, const std::string& eos, bool add_bos = false) {
  BpeVocab v;
  for (char c = 'a'; c <= 'z'; ++c) v.tokens.emplace_back(1, c);
  v.tokens.push_back("Ġ");
  v.token_types.assign(v.tokens.size(), static_cast<int32_t>(TokenType::Normal));
  for (const std::string& special : {bos, eos}) {
    v.tokens.push_back(special);
    v.token_types.push_back(static_cast<int32_t>(TokenType::Control));
  }
  v.setup.bos_id = static_cast<int32_t>(v.tokens.size()) - 2;
  v.setup.eos_id = static_cast<int32_t>(v.tokens.size()) - 1;
  v.setup.add_bos = add_bos;
  return BpeTokenizer(std::move(v));
}

nlohmann::json load_golden() {
  const std::string path = test::data_path("chat_templates.json");
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (run from the repository root)");
  return nlohmann::json::parse(in);
}

std::vector<ChatMessage> messages_of(const nlohmann::json& j) {
  std::vector<ChatMessage> messages;
  for (const auto& m : j) messages.push_back({m["role"], m["content"]});
  return messages;
}

// The template a golden family is detected as, from its published Jinja text.
ChatTemplate detected(const nlohmann::json& golden, const std::string& family) {
  const auto& t = golden["templates"][family];
  const BpeTokenizer tok = tokenizer_with(t["bos_token"], t["eos_token"]);
  return ChatTemplate::choose(t["jinja"], "", tok);
}

TEST(ChatTemplate, PublishedTemplatesAreDetected) {
  const nlohmann::json golden = load_golden();
  ASSERT_EQ(golden["templates"].size(), 5u);
  for (const auto& [family, t] : golden["templates"].items()) {
    const ChatTemplate tmpl = detected(golden, family);
    EXPECT_EQ(tmpl.name(), family);
    EXPECT_NE(tmpl.reason().find("detected from"), std::string::npos) << tmpl.reason();
  }
  EXPECT_EQ(detected(golden, "chatml").default_system(),
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(detected(golden, "llama2").default_system(), "");
}

TEST(ChatTemplate, RendersLikeThePublishedTemplates) {
  const nlohmann::json golden = load_golden();
  int checked = 0, raising = 0;
  for (const auto& c : golden["cases"]) {
    const ChatTemplate tmpl = detected(golden, c["template"]);
    const std::vector<ChatMessage> messages = messages_of(c["messages"]);
    const bool generation = c["add_generation_prompt"];
    SCOPED_TRACE(c["template"].get<std::string>() + " " + c["messages"].dump() +
                 (generation ? " +generation" : ""));
    if (c["text"].is_null()) {
      EXPECT_THROW(tmpl.render(messages, generation), std::invalid_argument);
      ++raising;
    } else {
      EXPECT_EQ(tmpl.render(messages, generation), c["text"].get<std::string>());
      ++checked;
    }
  }
  EXPECT_GE(checked, 60);
  EXPECT_EQ(raising, 4);  // Llama 2 and Mistral, with and without the generation prompt
}

bool has_surrounding_space(const std::vector<ChatMessage>& messages) {
  return std::any_of(messages.begin(), messages.end(), [](const ChatMessage& m) {
    return !m.content.empty() && (std::isspace(static_cast<unsigned char>(m.content.front())) ||
                                  std::isspace(static_cast<unsigned char>(m.content.back())));
  });
}

// Plays a conversation the way the chat REPL does: the first turn rendered whole, each
// later one through next_turn after the model's answer. The result must be the golden
// rendering of the whole conversation. The model's answer is taken from that rendering:
// the text after what was fed, up to and including the answer's content. (Where a template
// strips spaces around messages, that answer would be ambiguous, so such conversations are
// left out.)
TEST(ChatTemplate, TurnByTurnEqualsTheWholeConversation) {
  const nlohmann::json golden = load_golden();
  int played = 0;
  for (const auto& c : golden["cases"]) {
    const std::vector<ChatMessage> all = messages_of(c["messages"]);
    if (c["text"].is_null() || !c["add_generation_prompt"] || all.size() < 3 ||
        has_surrounding_space(all)) {
      continue;
    }
    const ChatTemplate tmpl = detected(golden, c["template"]);
    const std::string whole = c["text"];
    SCOPED_TRACE(c["template"].get<std::string>() + " " + c["messages"].dump());

    std::vector<ChatMessage> history;
    size_t next = all[0].role == "system" ? 2 : 1;
    history.assign(all.begin(), all.begin() + next);
    std::string fed = tmpl.render(history, true);
    while (next < all.size()) {
      ASSERT_EQ(whole.compare(0, fed.size(), fed), 0) << "fed so far: " << fed;
      const std::string& content = all[next].content;
      const size_t at = whole.find(content, fed.size());
      ASSERT_NE(at, std::string::npos);
      const std::string answer = whole.substr(fed.size(), at + content.size() - fed.size());
      fed += answer;
      history.push_back({"assistant", answer});
      fed += tmpl.next_turn(history, all[next + 1].content);
      history.push_back(all[next + 1]);
      next += 2;
    }
    EXPECT_EQ(fed, whole);
    ++played;
  }
  EXPECT_EQ(played, 10);  // two multi-turn conversations, five families
}

TEST(ChatTemplate, PlainTemplateContinuesItself) {
  const BpeTokenizer tok = tokenizer_with("<s>", "</s>");
  const ChatTemplate plain = ChatTemplate::choose("", "plain", tok);
  const std::vector<ChatMessage> first = {{"system", "Be brief."}, {"user", "Hi"}};
  EXPECT_EQ(plain.render(first, true), "Be brief.\n\nUser: Hi\nAssistant:");
  std::vector<ChatMessage> history = first;
  history.push_back({"assistant", " Hello."});
  EXPECT_EQ(plain.render(first, true) + " Hello." + plain.next_turn(history, "Bye"),
            "Be brief.\n\nUser: Hi\nAssistant: Hello.\n\nUser: Bye\nAssistant:");
}

TEST(ChatTemplate, DetectionByMarkers) {
  const BpeTokenizer tok = tokenizer_with("<s>", "</s>");
  struct Case {
    const char* jinja;
    const char* family;
  };
  const Case cases[] = {
      {"{{ '<|im_start|>' + role }}", "chatml"},
      {"<|start_header_id|>{{ role }}<|end_header_id|>", "llama3"},
      {"[INST] <<SYS>>{{ system }}<</SYS>>", "llama2"},
      {"{{ '[INST] ' + content + ' [/INST]' }}", "mistral"},
      {"{{ '<|user|>\n' }}{{ '<|assistant|>' }}", "zephyr"},
  };
  for (const Case& c : cases) {
    testing::internal::CaptureStderr();
    EXPECT_EQ(ChatTemplate::choose(c.jinja, "", tok).name(), c.family) << c.jinja;
    EXPECT_EQ(testing::internal::GetCapturedStderr(), "") << "no warning for " << c.family;
  }
}

TEST(ChatTemplate, UnknownOrMissingTemplatesFallBackToPlainWithAWarning) {
  const BpeTokenizer tok = tokenizer_with("<s>", "</s>");
  for (const char* jinja : {"", "<start_of_turn>{{ role }}", "{{ '<|user|>' }}"}) {
    testing::internal::CaptureStderr();
    const ChatTemplate tmpl = ChatTemplate::choose(jinja, "", tok);
    const std::string warning = testing::internal::GetCapturedStderr();
    EXPECT_EQ(tmpl.name(), "plain") << jinja;
    EXPECT_NE(tmpl.reason().find("fallback"), std::string::npos) << tmpl.reason();
    EXPECT_NE(warning.find("warning"), std::string::npos) << warning;
    EXPECT_EQ(std::count(warning.begin(), warning.end(), '\n'), 1) << "one line: " << warning;
  }
}

TEST(ChatTemplate, OverrideWinsOverTheModelsTemplate) {
  const BpeTokenizer tok = tokenizer_with("<|begin_of_text|>", "<|eot_id|>");
  for (const std::string& name : ChatTemplate::names()) {
    const ChatTemplate tmpl = ChatTemplate::choose("{{ '<|im_start|>' }}", name, tok);
    EXPECT_EQ(tmpl.name(), name);
    EXPECT_EQ(tmpl.reason(), "--template " + name);
  }
  EXPECT_EQ(ChatTemplate::names().size(), 6u);
  EXPECT_THROW(ChatTemplate::choose("", "vicuna", tok), std::invalid_argument);
}

TEST(ChatTemplate, BosOnlyAtTheStartAndNeverTwice) {
  const BpeTokenizer adds_bos = tokenizer_with("<s>", "</s>", /*add_bos=*/true);
  const int32_t bos = adds_bos.bos_id(), eos = adds_bos.eos_id();
  // Zephyr writes no bos: the tokenizer adds it at the start of the conversation only.
  EXPECT_EQ(encode_chat(adds_bos, "ab", true), (std::vector<int32_t>{bos, 0, 1}));
  EXPECT_EQ(encode_chat(adds_bos, "ab", false), (std::vector<int32_t>{0, 1}));
  // Llama 2 and Mistral write it themselves, also in later turns.
  EXPECT_EQ(encode_chat(adds_bos, "<s>a", true), (std::vector<int32_t>{bos, 0}));
  EXPECT_EQ(encode_chat(adds_bos, "</s><s>a", false), (std::vector<int32_t>{eos, bos, 0}));
  const BpeTokenizer no_bos = tokenizer_with("<s>", "</s>", /*add_bos=*/false);
  EXPECT_EQ(encode_chat(no_bos, "ab", true), (std::vector<int32_t>{0, 1}));
}

TEST(ChatTemplate, AnswersEndAtTheTemplatesEndMarker) {
  // The markers are special tokens of the vocabularies that use them; each must stop
  // generation even where it is not the tokenizer's eos.
  for (const char* marker : {"<|im_end|>", "<|eot_id|>", "</s>"}) {
    BpeVocab v;
    v.tokens = {"a", "<s>", "<|endoftext|>", marker};
    v.token_types = {1, 3, 3, 3};
    v.setup.bos_id = 1;
    v.setup.eos_id = 2;
    const BpeTokenizer with_marker(std::move(v));
    EXPECT_TRUE(with_marker.is_end_of_generation(3)) << marker;
    EXPECT_TRUE(with_marker.is_end_of_generation(2));
    EXPECT_FALSE(with_marker.is_end_of_generation(0));
  }
}

}  // namespace
}  // namespace kvlm
