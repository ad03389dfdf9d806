// The method registry (kv/registry.cpp): method names and traits, specs to strategies,
// the rules of composition, and the typed parameters (Params, Budget) methods share.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <utility>

#include "kv/strategies/strategies.h"
#include "kv/strategy.h"

namespace kvlm {
namespace {

// The message of the std::invalid_argument that make_strategy(spec) throws.
std::string strategy_error(const std::string& spec) {
  try {
    make_strategy(spec);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

// What a composition error says after its "--kv SPEC: " prefix, which repeats every name.
std::string reason(const std::string& message) {
  const size_t colon = message.find(": ");
  return colon == std::string::npos ? message : message.substr(colon + 2);
}

Params params(std::map<std::string, std::string> values) {
  Params p;
  p.values = std::move(values);
  return p;
}

TEST(Registry, RejectsBadSpecsWithUsefulMessages) {
  EXPECT_EQ(make_strategy("full")->name(), "full");
  auto message = [](const std::string& spec) {
    try {
      make_strategy(spec);
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("nosuch").find("unknown method 'nosuch'"), std::string::npos);
  EXPECT_NE(message("nosuch").find("full"), std::string::npos) << "lists the valid methods";
  EXPECT_NE(message("full:budget=3").find("unknown parameter 'budget'"), std::string::npos);
  EXPECT_NE(message("full:budget").find("not key=value"), std::string::npos);
  EXPECT_NE(message("full:a=1,a=2").find("given twice"), std::string::npos);
  EXPECT_FALSE(known_methods().empty());
}

TEST(Registry, CompositionRules) {
  EXPECT_EQ(make_strategy("snapkv:budget=64+minicache")->name().find("snapkv"), 0u);
  EXPECT_THROW(make_strategy("streaming:budget=64+minicache"), std::invalid_argument);
  EXPECT_THROW(make_strategy("snapkv+h2o"), std::invalid_argument);
  EXPECT_THROW(make_strategy("minicache+snapkv"), std::invalid_argument);
  EXPECT_THROW(make_strategy("streaming+snapkv"), std::invalid_argument);
}

TEST(Registry, TraitsOfEveryMethod) {
  struct Expected {
    std::string name;
    bool budgeted, observes, merges_layers;
  };
  const std::vector<Expected> expected = {
      {"full", false, false, false},
      {"streaming", true, false, false},  // sinks + recent, no scores
      {"h2o", true, true, false},
      {"knorm", true, true, false},
      {"simlayerkv", false, true, false},  // per-layer rule, no budget= parameter
      {"snapkv", true, true, false},
      {"pyramidkv", true, true, false},
      {"adakv", true, true, false},
      {"dynamickv", true, true, false},
      {"minicache", false, false, true},
  };
  EXPECT_EQ(known_methods().size(), expected.size()) << "a new method needs a row here";
  for (const Expected& e : expected) {
    const MethodInfo* info = find_method(e.name);
    ASSERT_NE(info, nullptr) << e.name;
    EXPECT_EQ(info->name, e.name);
    EXPECT_EQ(info->traits.budgeted, e.budgeted) << e.name;
    EXPECT_EQ(info->traits.observes, e.observes) << e.name;
    EXPECT_EQ(info->traits.merges_layers, e.merges_layers) << e.name;
  }
}

// The strategy's own answer follows its parameters: knorm with decode=0 and minicache
// without merge_every compress only after a prefill (so knorm:decode=0 composes with
// minicache, as the prefill-time methods do).
TEST(Registry, CompressesWhileDecodingFollowsTheParameters) {
  for (const auto& [spec, expected] : std::vector<std::pair<std::string, bool>>{
           {"full", false}, {"streaming", true}, {"h2o", true}, {"simlayerkv", true},
           {"knorm", true}, {"knorm:decode=0", false}, {"snapkv", false}, {"minicache", false},
           {"minicache:merge_every=4", true}, {"snapkv:budget=128+minicache:merge_every=2", true},
           {"snapkv:budget=128+minicache", false}, {"knorm:decode=0+minicache", false}})
    EXPECT_EQ(make_strategy(spec)->compresses_while_decoding(), expected) << spec;
}

TEST(Registry, FindMethodReturnsNullForAnUnknownName) {
  EXPECT_EQ(find_method("nosuch"), nullptr);
  EXPECT_EQ(find_method(""), nullptr);
  EXPECT_EQ(find_method("snapkv:budget=64"), nullptr) << "a name, not a spec";
}

// name() spells every parameter out, so it must parse back to the same strategy.
TEST(Registry, EveryNameRecreatesItsStrategy) {
  for (const MethodInfo& info : known_methods()) {
    const std::string name = make_strategy(info.name)->name();
    EXPECT_EQ(name.rfind(info.name, 0), 0u) << name;
    std::string again;
    ASSERT_NO_THROW(again = make_strategy(name)->name()) << name;
    EXPECT_EQ(again, name);
  }
  const std::string composed = make_strategy("snapkv:budget=64+minicache")->name();
  EXPECT_EQ(make_strategy(composed)->name(), composed);
}

TEST(Registry, CompositionErrorsNameTheOffendingMethod) {
  // minicache cannot follow a method that keeps evicting while decoding.
  const std::string after_streaming = reason(strategy_error("streaming:budget=64+minicache"));
  EXPECT_NE(after_streaming.find("not with streaming"), std::string::npos) << after_streaming;

  // The method that reads scores must come first: the message names it.
  const std::string observer_second = reason(strategy_error("minicache+snapkv"));
  EXPECT_NE(observer_second.find("first (snapkv"), std::string::npos) << observer_second;
  const std::string after_streaming_2 = reason(strategy_error("streaming+snapkv"));
  EXPECT_NE(after_streaming_2.find("first (snapkv"), std::string::npos) << after_streaming_2;

  // Two methods that read scores: only one may.
  const std::string two_observers = strategy_error("snapkv+h2o");
  EXPECT_NE(reason(two_observers).find("only one method"), std::string::npos) << two_observers;
  EXPECT_NE(two_observers.find("snapkv+h2o"), std::string::npos) << "quotes the spec";
}

TEST(Registry, BudgetResolvesTokensOrAShare) {
  const Budget tokens = read_budget(params({{"budget", "5"}}), 128);
  EXPECT_EQ(tokens.tokens, 5);
  EXPECT_EQ(tokens.resolve(10), 5);
  EXPECT_EQ(tokens.resolve(1000), 5) << "a fixed count ignores the length";
  EXPECT_EQ(tokens.spec(), "budget=5");
  EXPECT_EQ(tokens.value(), "5");

  const Budget share = read_budget(params({{"ratio", "0.25"}}), 128);
  EXPECT_EQ(share.resolve(10), 3);  // ceil(0.25 * 10) = ceil(2.5)
  EXPECT_EQ(share.resolve(8), 2);   // 0.25 * 8 = 2 exactly: no rounding up
  EXPECT_EQ(share.spec(), "ratio=0.25");
  EXPECT_EQ(share.value(), "0.25");

  EXPECT_EQ(read_budget(params({}), 128).tokens, 128) << "the fallback when neither is given";
  EXPECT_THROW(read_budget(params({{"budget", "5"}, {"ratio", "0.5"}}), 128),
               std::invalid_argument);
  EXPECT_THROW(read_budget(params({{"budget", "0"}}), 128), std::invalid_argument);
  EXPECT_THROW(read_budget(params({{"ratio", "1.5"}}), 128), std::invalid_argument);
}

TEST(Registry, CountOrShareReadsADecimalPointOrExponentAsAShare) {
  const Budget count = read_count_or_share(params({{"recent", "1024"}}), "recent", 7);
  EXPECT_EQ(count.tokens, 1024);
  EXPECT_EQ(count.ratio, 0);

  const Budget share = read_count_or_share(params({{"recent", "0.25"}}), "recent", 7);
  EXPECT_EQ(share.ratio, 0.25);
  EXPECT_EQ(share.resolve(100), 25);

  const Budget exponent = read_count_or_share(params({{"recent", "1e-1"}}), "recent", 7);
  EXPECT_DOUBLE_EQ(exponent.ratio, 0.1);
  EXPECT_EQ(exponent.resolve(100), 10);

  const Budget absent = read_count_or_share(params({{"other", "3"}}), "recent", 7);
  EXPECT_EQ(absent.tokens, 7);
  EXPECT_EQ(absent.ratio, 0);
}

}  // namespace
}  // namespace kvlm
