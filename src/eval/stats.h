// The statistics a table of accuracies needs before it can rank methods: how far a share
// measured on n prompts may be from the true one, and whether two methods run on the same
// prompts differ by more than chance.
#pragma once

namespace kvlm {

struct Interval {
  double low = 0, high = 1;
};

// The 95% Wilson score interval of a share p measured on n trials (Wilson 1927). Unlike
// p +- 1.96 sqrt(p(1-p)/n) it stays inside [0, 1] and is not empty at p = 0 or 1, which
// matters at the few trials an evaluation can afford. n = 0: [0, 1].
Interval wilson_interval(double p, int n);

// Paired comparison on the same prompts (an exact sign test, McNemar's test for small
// counts): of the prompts where exactly one of two methods is right, `only_first` favour
// the first and `only_second` the second. Returns the two-sided p-value of so lopsided a
// split if either method were as likely to be the one right: 2 * P(X <= min) for X ~
// Binomial(only_first + only_second, 1/2), at most 1; 1 when there is no such prompt.
double sign_test_p(int only_first, int only_second);

}  // namespace kvlm
