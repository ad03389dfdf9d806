// Chat templates: how a conversation is laid out as text for each model family.
//
// A model ships its template as Jinja (tokenizer.chat_template). kvlm does not run Jinja:
// it recognises the family by the template's markers and lays the conversation out itself,
// byte for byte as the family's published template renders it (tests/data/
// chat_templates.json, rendered with jinja2 by tests/golden/make_template_golden.py, is the
// reference).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace kvlm {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

class ChatTemplate {
 public:
  enum class Kind {
    ChatML,   // <|im_start|>role\n...<|im_end|>\n (SmolLM2, Qwen, OpenHermes)
    Llama2,   // <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] answer </s>
    Llama3,   // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
    Mistral,  // <s> [INST] system\n\nuser [/INST] answer</s> (mistralai's "v1")
    Zephyr,   // <|system|>\n...</s>\n<|user|>\n...</s>\n<|assistant|>\n (TinyLlama)
    Plain,    // User: ...\nAssistant: ... for models without a known template
  };

  // The names --template accepts, one per kind.
  static const std::vector<std::string>& names();

  // The template for a model: `override_name` (one of names()) when not empty, else the
  // family detected from the markers in `jinja`, else Plain with a warning on stderr.
  // bos_token / eos_token in the templates are the tokenizer's bos and eos texts.
  static ChatTemplate choose(const std::string& jinja, const std::string& override_name,
                             const Tokenizer& tok);

  Kind kind() const { return kind_; }
  std::string name() const;
  const std::string& reason() const { return reason_; }  // why this one, for `kvlm info`
  // What the template says when the conversation has no system message ("" for none).
  const std::string& default_system() const { return default_system_; }

  // The conversation as the published template renders it. With add_generation_prompt the
  // text ends where the assistant's answer begins. Throws std::invalid_argument where the
  // template raises (roles that do not alternate user/assistant).
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  // What to feed after the model answered `history` (which ends with that answer, as the
  // model wrote it; its end token was not fed) to have it answer `user` next: the text that
  // closes the answer, then the new user turn and the start of the next answer.
  std::string next_turn(const std::vector<ChatMessage>& history, const std::string& user) const;

 private:
  ChatTemplate(Kind kind, std::string reason, const std::string& jinja, const Tokenizer& tok);
  std::string answer_close() const;

  Kind kind_;
  std::string reason_;
  std::string default_system_;
  std::string bos_, eos_;
};

// Encodes text laid out by a template: special tokens written in it become their ids, and
// the tokenizer's bos is added at the start of a conversation unless the template wrote it.
std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::string& text,
                                 bool conversation_start);

}  // namespace kvlm
