#include "eval/stats.h"

#include <algorithm>
#include <cmath>

namespace kvlm {

Interval wilson_interval(double p, int n) {
  if (n <= 0) return {};
  constexpr double z = 1.959963984540054;  // the two-sided 95% point of the normal
  const double z2n = z * z / n;
  const double centre = (p + z2n / 2) / (1 + z2n);
  const double half = z * std::sqrt(p * (1 - p) / n + z2n / (4 * n)) / (1 + z2n);
  // At p = 0 or 1 the bound is exactly 0 or 1; the formula leaves a rounding residue.
  return {p <= 0 ? 0.0 : std::max(0.0, centre - half), p >= 1 ? 1.0 : std::min(1.0, centre + half)};
}

double sign_test_p(int only_first, int only_second) {
  const int n = only_first + only_second, k = std::min(only_first, only_second);
  if (n == 0) return 1;
  // P(X <= k) summed in logs: n reaches hundreds, where 2^n and binomials overflow.
  double tail = 0;
  for (int i = 0; i <= k; i++)
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) -
                     n * std::log(2.0));
  return std::min(1.0, 2 * tail);
}

}  // namespace kvlm
