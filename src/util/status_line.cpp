#include "util/status_line.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace kvlm {

StatusLine::StatusLine(bool wanted, double delay_seconds)
    : enabled_(wanted && isatty(STDERR_FILENO)), delay_(delay_seconds), start_(Clock::now()),
      last_(start_) {}

StatusLine::~StatusLine() {
  if (shown_) {
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
  }
}

double StatusLine::elapsed() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

void StatusLine::update(const std::string& text) {
  if (!enabled_ || elapsed() < delay_) return;
  const auto now = Clock::now();
  if (shown_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  shown_ = true;
  std::string line = text;
  struct winsize size {};
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 1 && line.size() >= size.ws_col)
    line.resize(size.ws_col - 1);  // a wrapped line could not be rewritten in place
  std::fprintf(stderr, "\r\033[K%s", line.c_str());
  std::fflush(stderr);
}

}  // namespace kvlm
