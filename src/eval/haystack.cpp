#include "eval/haystack.h"

#include <cctype>

#include "eval/rng.h"

namespace kvlm {

namespace {

// The grammar's vocabulary: a small town, its people and their seasons. Subjects are
// singular unless named plural; predicates agree with them.
struct Verb {
  std::string base, past, third;  // repair, repaired, repairs
};

const std::vector<std::string> kPeople = {
    "the miller", "the old schoolteacher", "my grandmother", "the harbour master",
    "a travelling painter", "the baker's youngest daughter", "the new doctor",
    "our neighbour across the lane", "the ferryman", "the head gardener", "the librarian",
    "a quiet student from the city", "the shepherd", "the clockmaker", "the innkeeper",
    "the mayor", "an old sailor", "the blacksmith", "the village priest",
    "a visiting engineer", "the postmistress", "the carpenter's apprentice",
    "the widow at the mill", "the station keeper"};
const std::vector<std::string> kGroups = {
    "the fishermen", "the children of the valley", "most families", "the farmers",
    "the older villagers", "the travellers", "the shopkeepers", "the women of the choir",
    "the boys from the school", "the neighbours"};
const std::vector<Verb> kVerbs = {
    {"repair", "repaired", "repairs"},     {"paint", "painted", "paints"},
    {"visit", "visited", "visits"},        {"describe", "described", "describes"},
    {"remember", "remembered", "remembers"}, {"keep", "kept", "keeps"},
    {"build", "built", "builds"},          {"sell", "sold", "sells"},
    {"find", "found", "finds"},            {"carry", "carried", "carries"},
    {"study", "studied", "studies"},       {"clean", "cleaned", "cleans"},
    {"measure", "measured", "measures"},   {"guard", "guarded", "guards"},
    {"watch", "watched", "watches"},       {"admire", "admired", "admires"},
    {"borrow", "borrowed", "borrows"},     {"mend", "mended", "mends"},
    {"inspect", "inspected", "inspects"},  {"move", "moved", "moves"},
    {"sketch", "sketched", "sketches"},    {"protect", "protected", "protects"},
    {"decorate", "decorated", "decorates"}, {"count", "counted", "counts"}};
const std::vector<std::string> kObjects = {
    "the broken fence", "an old map of the valley", "the letters from the coast",
    "a basket of apples", "the bells of the chapel", "the stone bridge",
    "a small wooden boat", "the orchard behind the mill", "the accounts of the market",
    "the lanterns on the pier", "the long table in the hall", "the garden wall",
    "a box of faded photographs", "the roof of the school", "the winter stores",
    "a pair of grey horses", "the ledger of the inn", "the path to the lighthouse",
    "the nets by the slipway", "the windows of the library", "a cart full of timber",
    "the records of the parish", "the copper kettle", "the gate of the old cemetery",
    "the beehives on the slope", "a chest of woollen blankets", "the signs at the crossroads",
    "the little museum", "the clock above the station", "the seeds for the new field"};
const std::vector<std::string> kPlaces = {
    "near the harbour", "behind the chapel", "at the edge of the forest",
    "in the market square", "on the hill above the town", "along the river",
    "beside the old mill", "in the upper valley", "under the railway bridge",
    "at the end of the lane", "outside the inn", "by the frozen pond",
    "in the courtyard of the school", "on the road to the coast", "among the orchards",
    "at the foot of the cliffs"};
// Times that fit the present tense (habits); kPastTimes only the past.
const std::vector<std::string> kHabitualTimes = {
    "every spring", "during the harvest", "before the autumn fair", "on quiet evenings",
    "at the turn of the season", "on market days", "in the first week of summer",
    "late at night"};
const std::vector<std::string> kPastTimes = {
    "in the long winter", "after the great flood", "in those early years",
    "when the roads were closed", "long before the railway came", "after the storms had passed",
    "during the dry years", "whenever the ships came in"};
const std::vector<std::string> kManners = {
    "without a word", "with great care", "in a hurry", "slowly and patiently",
    "for the first time", "once again", "against all advice", "with the help of a friend",
    "as quietly as possible", "without asking anyone"};
const std::vector<std::string> kAdjectives = {
    "patient", "careful", "stubborn", "generous", "curious", "quiet", "restless",
    "cheerful", "weary", "proud", "kind", "secretive", "practical", "forgetful"};
const std::vector<std::string> kQualities = {
    "patience", "a good memory", "habit", "trust", "honest work", "a steady hand",
    "kindness", "curiosity", "tradition", "common sense", "a sense of humour", "good timber"};
const std::vector<std::string> kQualityPredicates = {
    "matters more than talent", "is learned slowly", "cannot be bought",
    "grows in small places", "outlasts most buildings", "is easy to forget",
    "keeps a village together", "rarely makes the news", "is worth more than gold",
    "comes with age", "is passed from parent to child", "survives every winter"};
const std::vector<std::string> kReasons = {
    "the roads were closed", "the old bridge had fallen", "the season was short",
    "nobody else would do it", "the council had asked", "the weather had turned",
    "the market had moved", "the river was high", "a letter had arrived",
    "the harvest was late"};
const std::vector<std::pair<std::string, std::string>> kScenes = {
    {"the fog", "rolled in from the sea"}, {"the rain", "fell without pause"},
    {"the wind", "turned to the north"},   {"the snow", "lay deep on every road"},
    {"the light", "faded early"},          {"the river", "rose over its banks"},
    {"the bells", "rang across the valley"}, {"the market", "stayed empty"},
    {"the harbour", "filled with small boats"}, {"the fields", "turned gold"}};
const std::vector<std::string> kConnectors = {
    "However", "Even so", "In the end", "For a while", "As a rule", "Oddly enough",
    "By all accounts", "Looking back", "At first", "Later that year"};

std::string capitalised(std::string s) {
  if (!s.empty()) s[0] = char(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

class EssaySentences final : public SentenceSource {
 public:
  explicit EssaySentences(uint64_t seed) : rng_(seed) {}

  Sentence next() override {
    const bool opens = left_in_paragraph_ == 0;
    if (opens) {  // a paragraph keeps coming back to one person, as an essay would
      left_in_paragraph_ = rng_.between(4, 8);
      topic_ = rng_.pick(kPeople);
    }
    left_in_paragraph_--;
    const bool new_paragraph = opens && !first_;
    first_ = false;
    return {capitalised(sentence()), new_paragraph};
  }

 private:
  // Every slot is drawn for every sentence, in this order: the order in which C++
  // evaluates the operands of one expression is unspecified, and a seed must give the
  // same text with every compiler.
  struct Slots {
    std::string person, other, group, object, object2, place, habit, time, manner;
    std::string adjective, quality, predicate, reason, scene, connector;
    Verb verb, verb2;
  };

  Slots draw() {
    Slots s;
    s.person = rng_.below(2) ? topic_ : rng_.pick(kPeople);
    do s.other = rng_.pick(kPeople);  // someone else than the paragraph's topic
    while (s.other == topic_);
    s.group = rng_.pick(kGroups);
    s.object = rng_.pick(kObjects);
    s.object2 = rng_.pick(kObjects);
    s.place = rng_.pick(kPlaces);
    s.habit = rng_.pick(kHabitualTimes);
    s.time = rng_.below(2) ? s.habit : rng_.pick(kPastTimes);
    s.manner = rng_.pick(kManners);
    s.adjective = rng_.pick(kAdjectives);
    s.quality = rng_.pick(kQualities);
    s.predicate = rng_.pick(kQualityPredicates);
    s.reason = rng_.pick(kReasons);
    const auto& scene = rng_.pick(kScenes);
    s.scene = scene.first + " " + scene.second;
    s.connector = rng_.pick(kConnectors);
    s.verb = rng_.pick(kVerbs);
    s.verb2 = rng_.pick(kVerbs);
    return s;
  }

  std::string sentence() {
    const Slots s = draw();
    const Verb& v = s.verb;
    switch (rng_.below(16)) {
      case 0: return s.time + ", " + s.person + " " + v.past + " " + s.object + " " + s.place + ".";
      case 1: return s.person + " " + v.third + " " + s.object + " " + s.habit + ".";
      case 2: return s.group + " " + v.base + " " + s.object + " " + s.place + ".";
      case 3: return s.connector + ", " + s.person + " " + v.past + " " + s.object + " " + s.manner + ".";
      case 4: return "It is often said that " + s.quality + " " + s.predicate + ".";
      case 5: return s.person + " was " + s.adjective + ", so nobody was surprised when " + s.other + " " + v.past + " " + s.object + ".";
      case 6: return "Whenever " + s.person + " " + v.third + " " + s.object + ", " + s.group + " " + s.verb2.base + " " + s.object2 + ".";
      case 7: return s.quality + " " + s.predicate + ", as " + s.person + " once said " + s.place + ".";
      case 8: return "Nobody can say why " + s.person + " " + v.past + " " + s.object + " " + s.time + ".";
      case 9: return "If " + s.person + " " + v.third + " " + s.object + ", " + s.other + " will " + s.verb2.base + " " + s.object2 + ".";
      case 10: return "The story of how " + s.person + " " + v.past + " " + s.object + " is still told " + s.place + ".";
      case 11: return s.scene + " " + s.time + ", and " + s.group + " stayed " + s.place + ".";
      case 12: return "Some say that " + s.person + " " + v.past + " " + s.object + " only because " + s.reason + ".";
      case 13: return s.time + ", " + s.group + " " + v.past + " " + s.object + " " + s.manner + ".";
      case 14: return "Of all the people in the town, it was " + s.person + " who " + v.past + " " + s.object + " most often.";
      default: return s.person + " " + v.past + " " + s.object + " because " + s.reason + ".";
    }
  }

  SplitMix64 rng_;
  int left_in_paragraph_ = 0;
  bool first_ = true;
  std::string topic_;
};

class CycledSentences final : public SentenceSource {
 public:
  explicit CycledSentences(std::vector<Sentence> sentences) : sentences_(std::move(sentences)) {}
  Sentence next() override {
    Sentence s = sentences_[at_];
    at_ = (at_ + 1) % sentences_.size();
    return s;
  }

 private:
  std::vector<Sentence> sentences_;
  size_t at_ = 0;
};

}  // namespace

std::unique_ptr<SentenceSource> essay_sentences(uint64_t seed) {
  return std::make_unique<EssaySentences>(seed);
}

std::unique_ptr<SentenceSource> cycled_sentences(std::vector<Sentence> sentences) {
  return std::make_unique<CycledSentences>(std::move(sentences));
}

std::vector<Sentence> bland_sentences() {
  return {{"The sky is grey and the road is long.", false},
          {"A cart goes by, and then another one.", false},
          {"The wind is soft and nothing changes.", false},
          {"Here we are, and on we go again.", false},
          {"The day goes slowly past the fields.", false}};
}

std::vector<Sentence> split_sentences(const std::string& text) {
  std::vector<Sentence> out;
  std::string current;
  bool paragraph = false;  // a blank line since the last sentence ended
  int newlines = 0;
  auto finish = [&] {
    if (!current.empty()) out.push_back({current, paragraph && !out.empty()});
    current.clear();
    paragraph = false;
  };
  for (size_t i = 0; i < text.size(); i++) {
    const char c = text[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      newlines += c == '\n';
      if (newlines >= 2) {
        finish();  // a blank line ends a sentence even without punctuation
        paragraph = true;
      }
      continue;
    }
    if (!current.empty() && i > 0 && std::isspace(static_cast<unsigned char>(text[i - 1])))
      current += ' ';
    newlines = 0;
    current += c;
    const bool ends = (c == '.' || c == '!' || c == '?') &&
                      (i + 1 == text.size() || std::isspace(static_cast<unsigned char>(text[i + 1])));
    if (ends) finish();
  }
  finish();
  return out;
}

}  // namespace kvlm
