// Any input in chat: bytes that are not UTF-8, NUL, control characters, a line of a
// megabyte or longer than the context give an answer or a one-line error, and what the
// model writes cannot drive the terminal (its control characters are shown, not obeyed).
#include <gtest/gtest.h>

#include "cli_fixture.h"
#include "util/terminal_text.h"

namespace kvlm {
namespace {

using namespace test::cli;

TEST(VisibleControls, TextNewlinesAndTabsPassUnchanged) {
  for (const std::string text : {"plain text", "two\nlines\tand a tab", "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80",
                                 "no-break\xc2\xa0space (U+00A0, just past the C1 range)", ""})
    EXPECT_EQ(visible_controls(text), text);
}

TEST(VisibleControls, EscapeSequencesAndControlsAreShownNotObeyed) {
  EXPECT_EQ(visible_controls("\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
  EXPECT_EQ(visible_controls("\x1b[2J\x1b[H"), "^[[2J^[[H") << "clear screen, cursor home";
  EXPECT_EQ(visible_controls("\x1b]0;title\x07"), "^[]0;title^G") << "window title";
  EXPECT_EQ(visible_controls("\x1b]52;c;aGk=\x07"), "^[]52;c;aGk=^G") << "clipboard";
  EXPECT_EQ(visible_controls(std::string("\r\x08\x7f\x00", 4)), "^M^H^?^@");
  EXPECT_EQ(visible_controls("\xc2\x9b" "2J \xc2\x85"), "<U+009B>2J <U+0085>") << "C1 controls";
  EXPECT_EQ(visible_controls("a\xff\x9b" "b"), "a<0xFF><0x9B>b") << "bytes that are not UTF-8";
}

TEST(ReplaceInvalidUtf8, ValidTextStaysAsItIs) {
  const RepairedText r = replace_invalid_utf8("caf\xc3\xa9 \x1b[1m\t\xf0\x9f\x98\x80");
  EXPECT_EQ(r.text, "caf\xc3\xa9 \x1b[1m\t\xf0\x9f\x98\x80");
  EXPECT_EQ(r.replaced, 0);
}

TEST(ReplaceInvalidUtf8, BrokenSequencesAndNulBecomeOneReplacementEach) {
  const std::string fffd = "\xef\xbf\xbd";
  const RepairedText r = replace_invalid_utf8(std::string("caf\xe9 ol\x00" "e \xe2\x82", 12));
  EXPECT_EQ(r.text, "caf" + fffd + " ol" + fffd + "e " + fffd);
  EXPECT_EQ(r.replaced, 3);
  EXPECT_EQ(r.first_offset, 3u);
}

// One chat, one line of each kind; every line gets an answer or one line of error, and the
// chat goes on to the end of its input.
TEST(ChatInput, AnyLineGetsAnAnswerOrAOneLineError) {
  KVLM_REQUIRE_MODEL();
  const std::string latin1_and_nul = std::string("Caf\xe9 ol") + '\0' + "e, say hi\n";
  const std::string megabyte_line = std::string(1 << 20, 'a') + "\n";
  const std::string escapes = "\x1b[31mred\x1b[0m, a bell\x07 and a return\r\n";
  const Result r = kvlm("chat " + model_flag() + " --temp 0 -n 4",
                        latin1_and_nul + megabyte_line + escapes + "/stats\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("note: 2 invalid UTF-8 sequences or NUL bytes replaced with U+FFFD "
                       "(the first at byte 3)\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\nerror: the message is "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(" tokens in the chat template, more than the whole context of 8192 "
                       "(--ctx-size)\n"), std::string::npos) << r.err;
  size_t answers = 0;
  for (size_t at = r.err.find(" full]\n"); at != std::string::npos; at = r.err.find(" full]\n", at + 1))
    answers++;
  EXPECT_EQ(answers, 2u) << "the first and third lines are answered:\n" << r.err;
  EXPECT_NE(r.err.find("context "), std::string::npos) << "/stats still runs";
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << "nothing the model wrote drives the terminal";
}

// With --no-context-shift, a message that fits the context but not after the conversation
// is refused whole: the conversation and its cache are as they were.
TEST(ChatInput, AMessagePastTheContextLeftIsDroppedAndTheChatGoesOn) {
  KVLM_REQUIRE_MODEL();
  std::string seventy_words;
  for (int i = 0; i < 70; i++) seventy_words += " word";
  const Result r = kvlm("chat " + model_flag() + " --temp 0 -n 4 -c 96 --no-context-shift",
                        "Hi\n/stats\n" + seventy_words + "\n/stats\n");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("error: context full: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("(the turn is dropped)\n"), std::string::npos) << r.err;
  const size_t first = r.err.find("\ncontext "), second = r.err.find("\ncontext ", first + 1);
  ASSERT_NE(second, std::string::npos) << r.err;
  EXPECT_EQ(r.err.substr(first, r.err.find('\n', first + 1) - first),
            r.err.substr(second, r.err.find('\n', second + 1) - second))
      << "the context holds what it held before the message";
}

// By default a turn that does not fit drops the oldest turns (the system prompt stays) and
// the chat goes on: every message is answered, each shift says how many turns went, and
// the cache never holds more than the context.
TEST(ChatInput, ContextShiftDropsWholeTurnsAndTheChatGoesOn) {
  KVLM_REQUIRE_MODEL();
  const std::string messages =
      "What is the capital of France?\nName a river in Germany.\nWhat colour is the sky?\n"
      "How many legs does a spider have?\nWhat is two plus two?\n/stats\n";
  const Result r = kvlm("chat " + model_flag() + " --temp 0 -n 24 -c 96 --system 'Be brief.'",
                        messages);
  ASSERT_EQ(r.status, 0) << r.err;
  size_t answers = 0, shifts = 0;
  for (size_t at = r.err.find(" full]\n"); at != std::string::npos; at = r.err.find(" full]\n", at + 1))
    answers++;
  for (size_t at = r.err.find("(context shift: the oldest "); at != std::string::npos;
       at = r.err.find("(context shift: the oldest ", at + 1))
    shifts++;
  EXPECT_EQ(answers, 5u) << r.err;
  EXPECT_GE(shifts, 1u) << r.err;
  EXPECT_EQ(r.err.find("error"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("context full"), std::string::npos) << "room was left for each answer\n" << r.err;
  const size_t stats = r.err.find("\ncontext ");
  ASSERT_NE(stats, std::string::npos) << r.err;
  EXPECT_LE(std::stoi(r.err.substr(stats + 9)), 96) << r.err;
}

}  // namespace
}  // namespace kvlm
