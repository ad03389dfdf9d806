// The terminal chat (REPL).
#pragma once
#include <string>

#include "chat_template.h"
#include "sample.h"
#include "session.h"

namespace kvlm {

struct ChatOptions {
  std::string system;  // "" = the template's default
  int n_predict = -1;  // per answer; -1 = until the end token or a full context
  SamplingParams sampling;
  SamplingFlagsGiven sampling_given;  // the flags the user gave win over the model's hints
  // When a turn does not fit in the context, drop the oldest turns (the system prompt
  // stays) and read what remains again; false: the turn fails with "context full".
  bool context_shift = true;
};

// Reads user messages from stdin until EOF or /quit; answers stream to stdout, status to
// stderr. Returns the exit status.
int chat_repl(Session& session, const ChatOptions& options);

}  // namespace kvlm
