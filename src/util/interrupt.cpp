#include "util/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>

namespace kvlm {

namespace {

// Lock-free atomics are all a signal handler may touch.
std::atomic<bool> g_requested{false};
std::atomic<const char*> g_waiting_notice{nullptr};  // set while waiting for input

void on_sigint(int) {
  if (const char* notice = g_waiting_notice.load()) {
    ssize_t ignored = write(STDERR_FILENO, notice, std::strlen(notice));
    (void)ignored;
    return;
  }
  if (g_requested.exchange(true)) {  // the first request is still unnoticed: really stop
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}

}  // namespace

void catch_interrupts() {
  struct sigaction action {};
  action.sa_handler = on_sigint;
  action.sa_flags = SA_RESTART;  // a read that Ctrl-C interrupts goes on
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
}

void throw_if_interrupted() {
  if (g_requested.exchange(false)) throw Interrupted();
}

WaitingForInput::WaitingForInput(const char* notice) {
  g_requested = false;  // a stop that came too late for the work before is void
  g_waiting_notice = notice;
}

WaitingForInput::~WaitingForInput() { g_waiting_notice = nullptr; }

}  // namespace kvlm
