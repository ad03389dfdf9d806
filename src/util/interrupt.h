// Ctrl-C as a request to stop, not a kill: a SIGINT handler only sets a flag, and long work
// looks at it at safe points (between the layers of a forward pass) by calling
// throw_if_interrupted(). The Interrupted exception then unwinds to whoever can put things
// right: chat drops the turn and restores the cache; run and the evaluations report what
// finished, write only whole files, and exit with kInterruptedExitStatus.
//
// A second Ctrl-C while the first is still unnoticed ends the program at once, so work
// that has no safe point (loading a model) can still be left.
#pragma once
#include <stdexcept>

namespace kvlm {

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted (Ctrl-C)") {}
};

// What a shell reports for a program that SIGINT ended: 128 + 2.
constexpr int kInterruptedExitStatus = 130;

// Installs the handler (again is harmless). Before it, Ctrl-C kills as usual.
void catch_interrupts();

// Throws Interrupted if Ctrl-C came since the last call (and takes the request).
void throw_if_interrupted();

// While one exists the program waits for its user (chat's prompt): Ctrl-C then stops
// nothing and writes `notice` to stderr. The notice must outlive the object.
class WaitingForInput {
 public:
  explicit WaitingForInput(const char* notice);
  ~WaitingForInput();
  WaitingForInput(const WaitingForInput&) = delete;
  WaitingForInput& operator=(const WaitingForInput&) = delete;
};

}  // namespace kvlm
