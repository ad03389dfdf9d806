// Chat templates and the terminal chat (REPL).
#pragma once
#include <string>

#include "sample.h"
#include "session.h"

namespace kvlm {

// How a conversation is laid out as text. Recognised from the model's template metadata
// (a Jinja string we do not execute: its family is detected by its markers).
struct ChatTemplate {
  enum class Kind { ChatML, Plain } kind = Kind::Plain;
  std::string default_system;  // system prompt the template inserts when none is given

  static ChatTemplate detect(const std::string& jinja);
  std::string name() const;
  // Text of one user turn followed by the start of the assistant's answer. `first` adds
  // the system message; otherwise the previous answer is closed first.
  std::string user_turn(const std::string& system, const std::string& user, bool first) const;
};

struct ChatOptions {
  std::string system;  // "" = the template's default
  int n_predict = -1;  // per answer; -1 = until the end token or a full context
  SamplingParams sampling;
};

// Reads user messages from stdin until EOF or /quit; answers stream to stdout, status to
// stderr. Returns the exit status.
int chat_repl(Session& session, const ChatOptions& options);

}  // namespace kvlm
