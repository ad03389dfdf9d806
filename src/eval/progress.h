// The live progress line of a long evaluation on stderr: what runs now, how much is done,
// how it goes, and when it should end. On a terminal the line rewrites itself; otherwise
// (a log file) a plain line is written now and then.
#pragma once
#include <chrono>
#include <string>

namespace kvlm {

class Progress {
 public:
  // total_work: in any unit proportional to time (the runner uses prompt tokens).
  Progress(std::string label, double total_work, int total_items, bool enabled);
  ~Progress();  // ends the line

  // Counts items an earlier run finished (--resume) as done: they show in the count and
  // the accuracy, and the ETA comes from this run's own pace over what is left.
  void resumed(int items, double work, double right);
  // Shows what starts now; `work` is its size.
  void start(const std::string& what);
  // Marks the current item done; `right` counts towards the running accuracy.
  void finish(double work, double right);

 private:
  void show(bool force);

  using Clock = std::chrono::steady_clock;
  std::string label_, current_;
  double total_work_, done_work_ = 0, right_ = 0, resumed_work_ = 0;
  int total_items_, done_items_ = 0, resumed_items_ = 0;
  bool enabled_, terminal_;
  bool shown_latest_ = false;  // the last line shown is up to date
  Clock::time_point start_time_, last_shown_;
};

// "42s", "3m05s", "1h02m"
std::string format_duration(double seconds);

}  // namespace kvlm
