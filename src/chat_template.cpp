#include "chat_template.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "util/text_format.h"

namespace kvlm {
namespace {

using Messages = std::vector<ChatMessage>;
using Kind = ChatTemplate::Kind;

struct KindInfo {
  Kind kind;
  const char* name;
};
constexpr KindInfo kKinds[] = {
    {Kind::ChatML, "chatml"},   {Kind::Llama2, "llama2"}, {Kind::Llama3, "llama3"},
    {Kind::Mistral, "mistral"}, {Kind::Zephyr, "zephyr"}, {Kind::Plain, "plain"},
};

// The markers that identify each family in a Jinja template, checked in this order: the
// first match wins ("[INST]" alone means Mistral only once Llama 2's "<<SYS>>" is ruled out).
struct Marker {
  Kind kind;
  std::vector<const char*> all_of;
};
const Marker kMarkers[] = {
    {Kind::ChatML, {"<|im_start|>"}},
    {Kind::Llama3, {"<|start_header_id|>"}},
    {Kind::Llama2, {"[INST]", "<<SYS>>"}},
    {Kind::Mistral, {"[INST]"}},
    {Kind::Zephyr, {"<|user|>", "<|assistant|>"}},
};

bool contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

// Python's str.strip() (Jinja's trim), for ASCII whitespace.
std::string strip(const std::string& text) {
  const char* space = " \t\n\r\f\v";
  const size_t begin = text.find_first_not_of(space);
  if (begin == std::string::npos) return "";
  return text.substr(begin, text.find_last_not_of(space) + 1 - begin);
}

// SmolLM2's template names its default system prompt inline:
// ...'<|im_start|>system\nYou are a helpful AI assistant ...<|im_end|>\n'...
std::string chatml_default_system(const std::string& jinja) {
  const std::string open = "<|im_start|>system\n", close = "<|im_end|>";
  const size_t at = jinja.find(open);
  if (at == std::string::npos) return "";
  const size_t begin = at + open.size(), end = jinja.find(close, begin);
  if (end == std::string::npos) return "";
  const std::string text = jinja.substr(begin, end - begin);
  // Anything Jinja-like means the prompt is computed, not written out.
  return text.find_first_of("{}'\"+") == std::string::npos ? text : "";
}

// A leading system message, split off as Llama 2's and Mistral's templates do.
struct SplitSystem {
  const ChatMessage* system = nullptr;
  Messages::const_iterator begin;
};
SplitSystem split_system(const Messages& messages) {
  const bool has_system = !messages.empty() && messages[0].role == "system";
  return {has_system ? &messages[0] : nullptr, messages.begin() + (has_system ? 1 : 0)};
}

// Llama 2 and Mistral: raise_exception('... roles must alternate user/assistant/...').
void check_alternation(Messages::const_iterator begin, Messages::const_iterator end) {
  for (auto it = begin; it != end; ++it) {
    if ((it->role == "user") != ((it - begin) % 2 == 0)) {
      throw std::invalid_argument(
          "chat template: conversation roles must alternate "
          "user/assistant/user/assistant/...");
    }
  }
}

// The published templates, transcribed. Each comment names the template it follows.

// SmolLM2-Instruct (plain ChatML when there is no default system prompt).
std::string render_chatml(const Messages& messages, bool generation,
                          const std::string& default_system) {
  std::string text;
  if (!messages.empty() && messages[0].role != "system" && !default_system.empty()) {
    text += "<|im_start|>system\n" + default_system + "<|im_end|>\n";
  }
  for (const ChatMessage& m : messages) {
    text += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  }
  if (generation) text += "<|im_start|>assistant\n";
  return text;
}

// meta-llama/Llama-2-7b-chat-hf. The prompt ends with " [/INST]"; there is no separate
// generation prompt.
std::string render_llama2(const Messages& messages, const std::string& bos,
                          const std::string& eos) {
  const SplitSystem s = split_system(messages);
  check_alternation(s.begin, messages.end());
  std::string text;
  for (auto it = s.begin; it != messages.end(); ++it) {
    std::string content = it->content;
    if (it == s.begin && s.system) {
      content = "<<SYS>>\n" + s.system->content + "\n<</SYS>>\n\n" + content;
    }
    if (it->role == "user") text += bos + "[INST] " + strip(content) + " [/INST]";
    if (it->role == "assistant") text.append(" ").append(strip(content)).append(" ").append(eos);
  }
  return text;
}

// meta-llama/Meta-Llama-3-8B-Instruct.
std::string render_llama3(const Messages& messages, bool generation, const std::string& bos) {
  std::string text;
  for (const ChatMessage& m : messages) {
    if (&m == &messages.front()) text += bos;
    text +=
        "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
  }
  if (generation) text += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return text;
}

// mistralai/Mistral-7B-Instruct-v0.2 (the "v1" template with a system prompt).
std::string render_mistral(const Messages& messages, const std::string& bos,
                           const std::string& eos) {
  const SplitSystem s = split_system(messages);
  check_alternation(s.begin, messages.end());
  std::string text = bos;
  for (auto it = s.begin; it != messages.end(); ++it) {
    if (it->role == "user") {
      const std::string system = it == s.begin && s.system ? s.system->content + "\n\n" : "";
      text += " [INST] " + system + it->content + " [/INST]";
    } else if (it->role == "assistant") {
      text += " " + it->content + eos;
    } else {
      throw std::invalid_argument(
          "chat template: only user and assistant roles are supported, "
          "with the exception of an initial optional system message");
    }
  }
  return text;
}

// HuggingFaceH4/zephyr-7b-beta, TinyLlama/TinyLlama-1.1B-Chat-v1.0.
std::string render_zephyr(const Messages& messages, bool generation, const std::string& eos) {
  std::string text;
  for (const ChatMessage& m : messages) {
    if (m.role == "user" || m.role == "system" || m.role == "assistant") {
      text += "<|" + m.role + "|>\n" + m.content + eos + "\n";
    }
  }
  if (generation && !messages.empty()) text += "<|assistant|>\n";
  return text;
}

// kvlm's own, for models without a known template.
std::string render_plain(const Messages& messages, bool generation) {
  const SplitSystem s = split_system(messages);
  std::string text = s.system ? s.system->content + "\n\n" : "";
  for (auto it = s.begin; it != messages.end(); ++it) {
    if (it->role == "user") text += "User: " + it->content + "\n";
    if (it->role == "assistant") text += "Assistant: " + it->content + "\n\n";
  }
  if (generation) text += "Assistant:";
  return text;
}

}  // namespace

const std::vector<std::string>& ChatTemplate::names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (const KindInfo& k : kKinds) out.emplace_back(k.name);
    return out;
  }();
  return names;
}

ChatTemplate::ChatTemplate(Kind kind, std::string reason, const std::string& jinja,
                           const Tokenizer& tok)
    : kind_(kind), reason_(std::move(reason)) {
  if (kind == Kind::ChatML) default_system_ = chatml_default_system(jinja);
  if (tok.bos_id() >= 0) bos_ = tok.token_bytes(tok.bos_id());
  if (tok.eos_id() >= 0) eos_ = tok.token_bytes(tok.eos_id());
}

ChatTemplate ChatTemplate::choose(const std::string& jinja, const std::string& override_name,
                                  const Tokenizer& tok) {
  if (!override_name.empty()) {
    for (const KindInfo& k : kKinds) {
      if (override_name == k.name) {
        return ChatTemplate(k.kind, "--template " + override_name, jinja, tok);
      }
    }
    const std::string known = join(kKinds, ", ", [](const KindInfo& k) { return k.name; });
    throw std::invalid_argument("--template " + override_name + ": unknown template (known: " +
                                known + ")");
  }
  for (const Marker& m : kMarkers) {
    if (!std::all_of(m.all_of.begin(), m.all_of.end(),
                     [&](const char* s) { return contains(jinja, s); })) {
      continue;
    }
    const std::string markers = join(m.all_of, " and ");
    return ChatTemplate(m.kind, "detected from " + markers + " in the model's chat template", jinja,
                        tok);
  }
  const std::string why = jinja.empty() ? "the model has no chat template"
                                        : "the model's chat template is of no family kvlm knows";
  std::fprintf(stderr, "kvlm: warning: %s; using a plain one (--template chooses another)\n",
               why.c_str());
  return ChatTemplate(Kind::Plain, "fallback: " + why, jinja, tok);
}

std::string ChatTemplate::name() const {
  for (const KindInfo& k : kKinds) {
    if (k.kind == kind_) return k.name;
  }
  return "?";
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  switch (kind_) {
    case Kind::ChatML: return render_chatml(messages, add_generation_prompt, default_system_);
    case Kind::Llama2: return render_llama2(messages, bos_, eos_);
    case Kind::Llama3: return render_llama3(messages, add_generation_prompt, bos_);
    case Kind::Mistral: return render_mistral(messages, bos_, eos_);
    case Kind::Zephyr: return render_zephyr(messages, add_generation_prompt, eos_);
    case Kind::Plain: return render_plain(messages, add_generation_prompt);
  }
  return "";
}

// What follows an answer's own text in render(): the generated answer ends before it.
std::string ChatTemplate::answer_close() const {
  switch (kind_) {
    case Kind::ChatML: return "<|im_end|>\n";
    case Kind::Llama2: return " " + eos_;
    case Kind::Llama3: return "<|eot_id|>";
    case Kind::Mistral: return eos_;
    case Kind::Zephyr: return eos_ + "\n";
    case Kind::Plain: return "\n\n";
  }
  return "";
}

std::string ChatTemplate::next_turn(const std::vector<ChatMessage>& history,
                                    const std::string& user) const {
  // Every template renders a longer conversation as the shorter one plus more text, so
  // the new turn is what the longer rendering adds.
  std::vector<ChatMessage> longer = history;
  longer.push_back({"user", user});
  const std::string before = render(history, false), after = render(longer, true);
  return answer_close() + after.substr(before.size());
}

std::vector<int32_t> encode_chat(const Tokenizer& tok, const std::string& text,
                                 bool conversation_start) {
  bool add_bos = conversation_start && tok.add_bos_default() && tok.bos_id() >= 0;
  if (add_bos && text.starts_with(tok.token_bytes(tok.bos_id()))) add_bos = false;
  return tok.encode(text, add_bos, /*parse_special=*/true);
}

}  // namespace kvlm
