#include "eval/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>

namespace kvlm {

std::string format_duration(double seconds) {
  const long s = long(seconds + 0.5);
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%lds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  return buf;
}

Progress::Progress(std::string label, double total_work, int total_items, bool enabled)
    : label_(std::move(label)), total_work_(total_work), total_items_(total_items),
      enabled_(enabled), terminal_(isatty(STDERR_FILENO)), start_time_(Clock::now()),
      last_shown_(start_time_) {}

Progress::~Progress() {
  if (!enabled_) return;
  if (!shown_latest_) show(true);
  if (terminal_) std::fputs("\n", stderr);
}

void Progress::resumed(int items, double work, double right) {
  resumed_items_ += items;
  resumed_work_ += work;
  done_items_ += items;
  done_work_ += work;
  right_ += right;
}

void Progress::start(const std::string& what) {
  current_ = what;
  show(done_items_ == resumed_items_);
}

void Progress::finish(double work, double right) {
  done_work_ += work;
  right_ += right;
  done_items_++;
  show(done_items_ == resumed_items_ + 1);  // a log too sees the first result and ETA at once
}

void Progress::show(bool force) {
  if (!enabled_) return;
  const auto now = Clock::now();
  // A log gets a line every 15 s; a terminal line is cheap to redraw.
  if (!force && !terminal_ && now - last_shown_ < std::chrono::seconds(15)) {
    shown_latest_ = false;
    return;
  }
  last_shown_ = now;
  shown_latest_ = true;
  const double elapsed = std::chrono::duration<double>(now - start_time_).count();
  std::string line = label_ + ": " + current_ + " | " + std::to_string(done_items_) + "/" +
                     std::to_string(total_items_) + " prompts";
  if (done_items_ > 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, ", %.0f%% right so far | %s elapsed", 100 * right_ / done_items_,
                  format_duration(elapsed).c_str());
    line += buf;
    const double run_work = done_work_ - resumed_work_;  // this run's pace only
    if (run_work > 0 && done_work_ < total_work_)
      line += ", ETA " + format_duration(elapsed / run_work * (total_work_ - done_work_));
  }
  struct winsize size {};
  if (terminal_ && ioctl(STDERR_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 1 &&
      line.size() >= size.ws_col)
    line.resize(size.ws_col - 1);  // a wrapped line could not be rewritten in place
  if (terminal_) std::fprintf(stderr, "\r\033[K%s", line.c_str());
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace kvlm
