// util/text_format.h on hand-made inputs: split and join are each other's inverse, byte
// counts take binary units, and numbers print as short as they read back.
#include "util/text_format.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <map>
#include <set>

namespace kvlm {
namespace {

using Items = std::vector<std::string>;

TEST(TextFormat, SplitKeepsEmptyItems) {
  EXPECT_EQ(split("a,b,,c", ','), (Items{"a", "b", "", "c"}));
  EXPECT_EQ(split("a,", ','), (Items{"a", ""}));
  EXPECT_EQ(split(",a", ','), (Items{"", "a"}));
  EXPECT_EQ(split("a", ','), (Items{"a"}));
  EXPECT_EQ(split("", ','), Items{});
}

TEST(TextFormat, JoinIsSplitsInverse) {
  for (const char* text : {"a,b,,c", "a,", ",a", "a", ",", ",,"})
    EXPECT_EQ(join(split(text, ','), ","), text) << text;
  EXPECT_EQ(join(Items{}, ", "), "");
}

TEST(TextFormat, JoinKeepsEmptyItemsAndSeparatorsOfAnyLength) {
  // An empty first item still takes its separator (a "was anything written yet" test on
  // the joined text would drop it).
  EXPECT_EQ(join(Items{"", "b"}, " and "), " and b");
  EXPECT_EQ(join(Items{"a", "", "c"}, " x "), "a x  x c");
}

TEST(TextFormat, JoinTakesAnyRangeAndAFunctionOfItsItems) {
  EXPECT_EQ(join(std::set<std::string>{"q4_1", "f16"}, "+"), "f16+q4_1");
  EXPECT_EQ(join(std::array<const char*, 2>{"x", "y"}, " and "), "x and y");
  EXPECT_EQ(join(std::vector<int>{3, 14, 15}, " x ", [](int d) { return std::to_string(d); }),
            "3 x 14 x 15");
  const std::map<std::string, std::string> params{{"budget", "64"}, {"window", "32"}};
  EXPECT_EQ(join(params, ", ", [](const auto& p) { return p.first + "=" + p.second; }),
            "budget=64, window=32");
}

TEST(TextFormat, BytesTakeBinaryUnits) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(1024), "1.0 KiB");
  EXPECT_EQ(format_bytes(12.5 * 1024 * 1024), "12.5 MiB");
  EXPECT_EQ(format_bytes(3.0 * 1024 * 1024 * 1024 * 1024 * 1024), "3072.0 TiB");
  EXPECT_EQ(format_count(512), "512");
  EXPECT_EQ(format_count(74236), "74.2K");
  EXPECT_EQ(format_count(134515008), "135M");
  EXPECT_EQ(format_count(8030261248), "8.03B");
  EXPECT_EQ(format_count(999600), "1.00M") << "rounding carries into the next unit";
  EXPECT_EQ(format_count(99960), "100K");
  EXPECT_EQ(format_count(9996), "10.0K");
}

TEST(TextFormat, NumbersPrintAsShortAsTheyReadBack) {
  EXPECT_EQ(format_number(0.2), "0.2");
  EXPECT_EQ(format_number(128.0), "128");
  EXPECT_EQ(format_number(0.95f), "0.95");  // a float's own shortest, not its double's
  EXPECT_EQ(format_number(double(0.95f)), "0.949999988079071");
  EXPECT_EQ(format_number(1e-6), "1e-06");
  EXPECT_EQ(format_number(1234567.0), "1234567");  // six significant digits: 1.23457e+06
  EXPECT_EQ(format_number(0.1234567), "0.1234567");
  EXPECT_EQ(format_number(0.1 + 0.2), "0.30000000000000004");  // the same double, not 0.3
  for (double x : {1.0 / 3, 6.02214076e23, -2.2250738585072014e-308, 1e300 * 7})
    EXPECT_EQ(std::strtod(format_number(x).c_str(), nullptr), x) << format_number(x);
}

}  // namespace
}  // namespace kvlm
