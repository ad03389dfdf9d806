#include "chat.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "util/interrupt.h"
#include "util/terminal_text.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

// Ctrl-C at the prompt only explains; during a turn it drops the turn.
const char kCtrlCAtThePrompt[] = "\n(Ctrl-D or /quit leaves the chat)\n> ";

void print_stats(Session& s) {
  std::fputs(kv_stats_text(s.cache(), s.strategy()).c_str(), stderr);
  std::fprintf(stderr, "context %d / %d positions used (%d tokens seen)\n",
               s.cache().next_position(), s.ctx_size(), s.cache().tokens_seen());
}

// The conversation, with its first `dropped` user/assistant turns left out (a system
// message stays), and the user's next message: the whole text a fresh cache reads.
std::vector<ChatMessage> shifted(const std::vector<ChatMessage>& conversation, int dropped,
                                 const std::vector<ChatMessage>& turn) {
  std::vector<ChatMessage> kept;
  size_t i = 0;
  if (!conversation.empty() && conversation[0].role == "system") kept.push_back(conversation[i++]);
  kept.insert(kept.end(), conversation.begin() + std::min(conversation.size(), i + 2 * dropped),
              conversation.end());
  kept.insert(kept.end(), turn.begin(), turn.end());
  return kept;
}

const char* kHelp =
    "commands:\n"
    "  /help        this list\n"
    "  /stats       KV cache: tokens, bytes held vs a full cache, kept lengths per layer\n"
    "  /reset       forget the conversation (empties the cache)\n"
    "  /kv SPEC     switch KV method (e.g. /kv full) and reset\n"
    "  /quit        leave (Ctrl-D too)\n"
    "end a line with \\ to continue the message on the next line; Ctrl-C drops the turn in\n"
    "progress (your message and the answer so far): the conversation is as before it\n";

}  // namespace

int chat_repl(Session& session, const ChatOptions& options) {
  const ChatTemplate tmpl = session.chat_template();
  const SamplingHints& hints = session.file().config().sampling;
  Sampler sampler(with_model_hints(options.sampling, hints, options.sampling_given));
  const std::string hinted = hints_used(hints, options.sampling_given);
  // What the model has seen so far, its answers as it wrote them.
  std::vector<ChatMessage> conversation;
  // False after a context shift whose turn then failed: the cache is empty and the next
  // turn reads the whole conversation again.
  bool cache_holds_conversation = true;
  const int n_predict = options.n_predict < 0 ? 1 << 30 : options.n_predict;
  // A turn that needs a context shift also leaves this much room for its answer.
  const int answer_room = std::min(n_predict, session.ctx_size() / 4);

  const bool interactive = isatty(STDIN_FILENO);
  if (interactive)
    std::fprintf(stderr, "chat with %s (template %s; sampling %s%s). /help for commands.\n",
                 session.file().config().name.c_str(), tmpl.name().c_str(),
                 describe(sampler.params()).c_str(), hinted.empty() ? "" : ("; " + hinted).c_str());

  while (true) {
    std::string message;
    {
      const WaitingForInput waiting(kCtrlCAtThePrompt);
      if (interactive) std::fprintf(stderr, "> ");
      std::string line;
      bool more = true;
      while (more && std::getline(std::cin, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();  // CRLF line ends
        more = !line.empty() && line.back() == '\\';
        message += more ? line.substr(0, line.size() - 1) + "\n" : line;
      }
      if (!std::cin && message.empty()) break;  // EOF
    }
    if (message.empty()) continue;
    if (RepairedText repaired = replace_invalid_utf8(message); repaired.replaced > 0) {
      std::fprintf(stderr, "note: %d invalid UTF-8 sequence%s or NUL byte%s replaced with U+FFFD "
                   "(the first at byte %zu)\n", repaired.replaced, repaired.replaced > 1 ? "s" : "",
                   repaired.replaced > 1 ? "s" : "", repaired.first_offset);
      message = std::move(repaired.text);
    }

    if (message[0] == '/') {
      std::string cmd = message.substr(0, message.find(' '));
      std::string arg = cmd.size() < message.size() ? message.substr(cmd.size() + 1) : "";
      if (cmd == "/quit" || cmd == "/exit") break;
      if (cmd == "/help") std::fputs(kHelp, stderr);
      else if (cmd == "/stats") print_stats(session);
      else if (cmd == "/reset") {
        session.reset();
        conversation.clear();
        cache_holds_conversation = true;
        std::fprintf(stderr, "(conversation reset)\n");
      } else if (cmd == "/kv") {
        try {
          session.set_strategy(KVSpec::parse(arg));
          conversation.clear();
          cache_holds_conversation = true;
          std::fprintf(stderr, "(kv method: %s; conversation reset)\n",
                       session.strategy().name().c_str());
        } catch (const std::exception& e) {
          std::fprintf(stderr, "error: %s\n", e.what());
        }
      } else std::fprintf(stderr, "unknown command %s (try /help)\n", cmd.c_str());
      continue;
    }

    std::vector<ChatMessage> turn;
    if (conversation.empty() && !options.system.empty()) turn.push_back({"system", options.system});
    turn.push_back({"user", message});
    const bool fresh = conversation.empty() || !cache_holds_conversation;
    const auto encode_all = [&](int dropped) {  // into an empty cache
      return encode_chat(session.tokenizer(),
                         tmpl.render(shifted(conversation, dropped, turn), true), true);
    };
    std::vector<int32_t> ids =
        fresh ? encode_all(0)
              : encode_chat(session.tokenizer(), tmpl.next_turn(conversation, message), false);
    // Context shift: when the turn and room for an answer do not fit after what the cache
    // holds, drop the oldest turns until the rest and the new message fit, and read them
    // into an empty cache.
    const int held = fresh ? 0 : session.cache().next_position();
    const bool system = !conversation.empty() && conversation[0].role == "system";
    const int turns = int(conversation.size() - system) / 2;
    if (options.context_shift && turns > 0 &&
        held + int(ids.size()) + answer_room > session.ctx_size()) {
      int dropped = 0;
      std::vector<int32_t> all = fresh ? ids : encode_all(0);
      while (dropped < turns && int(all.size()) + answer_room > session.ctx_size())
        all = encode_all(++dropped);
      if (int(all.size()) <= session.ctx_size()) {  // else the message alone is too long
        ids = std::move(all);
        session.reset();
        conversation = shifted(conversation, dropped, {});
        cache_holds_conversation = false;  // until this turn is done
        std::fprintf(stderr, "(context shift: the oldest %d turn%s dropped, %zu tokens read again)\n",
                     dropped, dropped == 1 ? "" : "s", ids.size());
      }
    }
    if (int(ids.size()) > session.ctx_size()) {
      std::fprintf(stderr, "error: the message is %zu tokens in the chat template, more than the "
                   "whole context of %d (--ctx-size)\n", ids.size(), session.ctx_size());
      continue;
    }
    // Ctrl-C or an error drops the whole turn: the cache, the strategy's state and the
    // sampler go back to the mark, so the next turn runs as if this one never happened.
    session.checkpoint();
    const Sampler sampler_at_mark = sampler;
    GenerationStats st;
    std::string answer;
    try {
      st = session.generate(ids, n_predict, sampler, [&answer](const std::string& piece) {
        answer += piece;
        const std::string shown = visible_controls(piece);  // the model cannot drive the terminal
        std::fwrite(shown.data(), 1, shown.size(), stdout);
        std::fflush(stdout);
      });
    } catch (const std::exception& e) {  // Ctrl-C, a full context, no memory: the chat goes on
      session.rollback();
      sampler = sampler_at_mark;
      if (!answer.empty()) std::fputs("\n", stdout);    // ends the answer shown so far
      else if (isatty(STDERR_FILENO)) std::fputs("\n", stderr);  // leaves the ^C echo
      std::fflush(stdout);
      if (dynamic_cast<const Interrupted*>(&e))
        std::fprintf(stderr, "(interrupted: the turn is dropped, the conversation is as before it)\n");
      else
        std::fprintf(stderr, "error: %s (the turn is dropped)\n", e.what());
      continue;
    }
    session.commit();
    cache_holds_conversation = true;
    conversation.insert(conversation.end(), turn.begin(), turn.end());
    conversation.push_back({"assistant", answer});
    std::fputs("\n", stdout);
    std::fflush(stdout);
    KVStats kv = session.cache().stats();
    std::fprintf(stderr, "[%d tokens, %.1f tok/s | prompt %d tokens, %.1f tok/s | kv %s / %s full%s]\n",
                 st.generated_tokens, st.decode_tokens_per_second(), st.prompt_tokens,
                 st.prefill_tokens_per_second(), format_bytes(kv.bytes_held).c_str(),
                 format_bytes(kv.bytes_full).c_str(),
                 st.context_full ? " | context full" : "");
  }
  if (interactive) std::fputs("\n", stderr);
  return 0;
}

}  // namespace kvlm
