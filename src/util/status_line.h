// A status line on stderr for long work in a terminal: it appears only once the work has
// taken `delay_seconds` (short work shows nothing), rewrites itself in place, and is
// erased when the work ends, so what follows (an answer) starts on a clean line. Off when
// stderr is not a terminal: logs and pipes get nothing.
#pragma once
#include <chrono>
#include <string>

namespace kvlm {

class StatusLine {
 public:
  StatusLine(bool wanted, double delay_seconds);
  ~StatusLine();  // erases the line
  StatusLine(const StatusLine&) = delete;
  StatusLine& operator=(const StatusLine&) = delete;

  // Shows `text` (at most ten times a second).
  void update(const std::string& text);
  double elapsed() const;

 private:
  using Clock = std::chrono::steady_clock;
  bool enabled_;
  bool shown_ = false;
  double delay_;
  Clock::time_point start_, last_;
};

}  // namespace kvlm
