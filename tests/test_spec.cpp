// KVSpec and MethodSpec (kv/spec.h): the syntax of --kv, written back by text(), the
// errors a malformed spec gives, and how parse_kv_list splits a comma-separated list.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kv/spec.h"

namespace kvlm {
namespace {

using ParamList = std::vector<std::pair<std::string, std::string>>;

// The message of the std::invalid_argument that parsing `text` throws ("no error" if none).
std::string parse_error(const std::string& text) {
  try {
    KVSpec::parse(text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "no error";
}

std::vector<std::string> list_texts(const std::string& list) {
  std::vector<std::string> texts;
  for (const KVSpec& spec : parse_kv_list(list)) texts.push_back(spec.text());
  return texts;
}

TEST(Spec, ParsesABareName) {
  const KVSpec spec = KVSpec::parse("full");
  ASSERT_EQ(spec.parts.size(), 1u);
  EXPECT_EQ(spec.parts[0].name, "full");
  EXPECT_TRUE(spec.parts[0].params.empty());
}

TEST(Spec, ParsesParametersInTheOrderGiven) {
  const KVSpec spec = KVSpec::parse("snapkv:budget=128,window=32");
  ASSERT_EQ(spec.parts.size(), 1u);
  EXPECT_EQ(spec.parts[0].name, "snapkv");
  EXPECT_EQ(spec.parts[0].params, (ParamList{{"budget", "128"}, {"window", "32"}}));
}

TEST(Spec, ParsesACompositionPartByPart) {
  const KVSpec spec = KVSpec::parse("snapkv:budget=64+minicache:t=0.5");
  ASSERT_EQ(spec.parts.size(), 2u);
  EXPECT_EQ(spec.parts[0].name, "snapkv");
  EXPECT_EQ(spec.parts[0].params, (ParamList{{"budget", "64"}}));
  EXPECT_EQ(spec.parts[1].name, "minicache");
  EXPECT_EQ(spec.parts[1].params, (ParamList{{"t", "0.5"}}));
}

TEST(Spec, TextRoundTripsExactly) {
  for (const std::string text : {"full", "snapkv:budget=128,window=32",
                                 "snapkv:budget=64+minicache:t=0.5",
                                 "h2o:window=8,budget=64"}) {  // order kept, not sorted
    EXPECT_EQ(KVSpec::parse(text).text(), text);
    EXPECT_EQ(KVSpec::parse(KVSpec::parse(text).text()).text(), text);
  }
  EXPECT_EQ(KVSpec::parse("snapkv:budget=64+minicache:t=0.5").parts[1].text(), "minicache:t=0.5");
}

TEST(Spec, SetReplacesInPlaceOrAppends) {
  MethodSpec m = KVSpec::parse("snapkv:budget=128,window=32").parts[0];
  EXPECT_TRUE(m.has("budget"));
  EXPECT_FALSE(m.has("kernel"));
  EXPECT_FALSE(m.has("snapkv")) << "the name is not a parameter";

  m.set("budget", "64");  // an existing key keeps its position
  EXPECT_EQ(m.params, (ParamList{{"budget", "64"}, {"window", "32"}}));
  m.set("kernel", "7");  // a new key goes last
  EXPECT_EQ(m.params, (ParamList{{"budget", "64"}, {"window", "32"}, {"kernel", "7"}}));
  EXPECT_TRUE(m.has("kernel"));
  EXPECT_EQ(m.text(), "snapkv:budget=64,window=32,kernel=7");

  MethodSpec bare{"full", {}};
  bare.set("budget", "3");
  EXPECT_EQ(bare.text(), "full:budget=3");  // the first parameter follows a colon
}

TEST(Spec, EqualityComparesTheWholeSpec) {
  KVSpec built;
  built.parts.push_back({"snapkv", {{"budget", "64"}}});
  built.parts.push_back({"minicache", {}});
  EXPECT_TRUE(built == KVSpec::parse("snapkv:budget=64+minicache"));
  EXPECT_FALSE(built == KVSpec::parse("snapkv:budget=65+minicache"));  // a value differs
  EXPECT_FALSE(built == KVSpec::parse("snapkv:budget=64"));            // a part is missing
  EXPECT_FALSE(KVSpec::parse("h2o") == KVSpec::parse("knorm"));        // a name differs
}

TEST(Spec, MalformedSpecsThrowNamingTheProblem) {
  struct Case {
    std::string text, problem;
  };
  for (const Case& c : std::vector<Case>{{"", "empty"},
                                         {"+snapkv", "method name is missing"},
                                         {"snapkv+", "method name is missing"},
                                         {"snapkv:budget", "'budget' is not key=value"},
                                         {"snapkv:=3", "'=3' is not key=value"},
                                         {"snapkv:a=1,a=2", "'a' is given twice"}}) {
    const std::string message = parse_error(c.text);
    EXPECT_EQ(message.rfind("--kv", 0), 0u) << "spec '" << c.text << "': " << message;
    EXPECT_NE(message.find(c.problem), std::string::npos) << "spec '" << c.text << "': " << message;
  }
}

TEST(Spec, ListSplitsAtCommasThatStartANewSpec) {
  // "window=8" continues snapkv's parameters; "h2o:..." and "full" start new specs.
  EXPECT_EQ(list_texts("snapkv:budget=64,window=8,h2o:budget=64,full"),
            (std::vector<std::string>{"snapkv:budget=64,window=8", "h2o:budget=64", "full"}));
  // A composition stays one spec even when its first part has several parameters.
  EXPECT_EQ(list_texts("snapkv:budget=64,window=8+minicache:t=0.5,full"),
            (std::vector<std::string>{"snapkv:budget=64,window=8+minicache:t=0.5", "full"}));
}

TEST(Spec, ListSkipsEmptyItems) {
  EXPECT_EQ(list_texts("full,,h2o"), (std::vector<std::string>{"full", "h2o"}));
  EXPECT_EQ(list_texts("full,"), (std::vector<std::string>{"full"}));
  EXPECT_TRUE(parse_kv_list("").empty());
}

TEST(Spec, ListRejectsAMalformedItem) {
  EXPECT_THROW(parse_kv_list("full,snapkv:a=1,a=2"), std::invalid_argument);
}

}  // namespace
}  // namespace kvlm
