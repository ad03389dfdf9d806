// Kept maps (eval/kept.h, kept_map_svg in eval/svg.h): what a cache holds, captured per
// layer and KV head, and an SVG whose rows count exactly those cells; token ranges and
// token texts for the prompt axis.
#include <gtest/gtest.h>

#include <numeric>
#include <regex>

#include "eval/kept.h"
#include "eval/svg.h"
#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"
#include "model/load.h"

namespace kvlm {
namespace {

constexpr int kLayers = 4, kHeads = 2, kDim = 4, kPrompt = 12;

// A prompt of kPrompt tokens in every layer: row contents are the position (non-zero, so
// MiniCache has directions to merge), with a per-layer tilt.
void fill(KVCache& cache) {
  for (int l = 0; l < kLayers; l++) {
    std::vector<float> rows(size_t(kPrompt) * kHeads * kDim);
    for (size_t i = 0; i < rows.size(); i++) rows[i] = 1.0f + float(i % 7) + 0.01f * l;
    cache.append(l, rows.data(), rows.data(), kHeads * kDim, 0, kPrompt);
  }
  cache.advance(kPrompt);
}

// Per (layer, head) of the SVG: data-kept, and the runs its data-own and data-merged
// lists give ("first:length first:length ...").
struct Row {
  int kept = 0, own = 0, merged = 0, runs = 0;
};
std::map<std::pair<int, int>, Row> rows_of(const std::string& svg) {
  std::map<std::pair<int, int>, Row> rows;
  const std::regex row(
      R"re(<g data-layer="(\d+)" data-head="(\d+)" data-kept="(\d+)" data-own="([^"]*)" data-merged="([^"]*)">)re");
  const std::regex run(R"re((\d+):(\d+))re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), row); it != std::sregex_iterator(); ++it) {
    Row& r = rows[{std::stoi((*it)[1]), std::stoi((*it)[2])}];
    r.kept = std::stoi((*it)[3]);
    for (auto [group, total] : {std::pair{4, &r.own}, {5, &r.merged}}) {
      const std::string list = (*it)[group];
      for (auto c = std::sregex_iterator(list.begin(), list.end(), run); c != std::sregex_iterator(); ++c) {
        *total += std::stoi((*c)[2]);
        r.runs++;
      }
    }
  }
  return rows;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

TEST(KeptMap, RowsCountExactlyTheKeptCellsOfEveryHead) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 64);
  fill(cache);
  // Uneven heads: layer 1 head 0 keeps 3 runs, layer 2 head 1 keeps one token.
  cache.compact(1, 0, {0, 1, 4, 5, 6, 10});
  cache.compact(2, 1, {11});
  auto full = make_strategy("full");
  const KeptPanel panel = capture_kept("toy", cache, *full, kPrompt);
  EXPECT_EQ(panel.kept[1][0], (std::vector<int32_t>{0, 1, 4, 5, 6, 10}));
  EXPECT_TRUE(panel.merged[1][0].empty());

  const std::string svg = kept_map_svg("toy", std::vector<std::string>(kPrompt, "x"), {panel}, {});
  const auto rows = rows_of(svg);
  ASSERT_EQ(rows.size(), size_t(kLayers * kHeads));
  int runs = 0;
  for (int l = 0; l < kLayers; l++)
    for (int h = 0; h < kHeads; h++) {
      const Row& r = rows.at({l, h});
      EXPECT_EQ(r.kept, cache.length(l, h)) << l << "," << h;
      EXPECT_EQ(r.own, cache.length(l, h)) << "runs add up to the kept count";
      EXPECT_EQ(r.merged, 0);
      runs += r.runs;
    }
  EXPECT_EQ(runs, kLayers * kHeads - 2 + 3 + 1) << "whole heads are one run; {0,1}{4,5,6}{10}; {11}";
  EXPECT_NE(svg.find("data-own=\"0:2 4:3 10:1\""), std::string::npos);
  EXPECT_EQ(count(svg, "<path fill=\"#2b6cb0\""), kLayers * kHeads) << "one path per row";
}

TEST(KeptMap, MergedTokensAndLayerNotesAreDrawnApart) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 64);
  fill(cache);
  auto minicache = make_strategy("minicache:start=2,retain=0.25");
  minicache->after_prefill(cache);
  const KeptPanel merged = capture_kept("minicache", cache, *minicache, kPrompt);
  const auto rows = rows_of(kept_map_svg("m", std::vector<std::string>(kPrompt, "x"), {merged}, {}));
  for (int l = 0; l < kLayers; l++)
    for (int h = 0; h < kHeads; h++) {
      EXPECT_EQ(rows.at({l, h}).merged, cache.shared_length(l, h)) << l << "," << h;
      EXPECT_EQ(rows.at({l, h}).own + rows.at({l, h}).merged, kPrompt) << "merged + own = every token";
    }
  EXPECT_GT(cache.shared_length(2, 0), 0) << "the toy merges something";

  // SimLayerKV names its lazy layers; the panel marks exactly those.
  KVCache lazy_cache(b, kLayers, kHeads, kDim, 64);
  auto simlayerkv = make_strategy("simlayerkv:delta=0.5,sinks=1,recent=2,probe=2");
  simlayerkv->begin_sequence(lazy_cache, kPrompt);
  const std::vector<float> rows_data(size_t(kPrompt) * kHeads * kDim, 1.0f);
  for (int l = 0; l < kLayers; l++) {
    lazy_cache.append(l, rows_data.data(), rows_data.data(), kHeads * kDim, 0, kPrompt);
    Observation obs;
    obs.layer = l;
    obs.n_new = obs.n_tokens = kPrompt;
    obs.window = 2;
    // Layers 1 and 3 put all their attention on the first and last slots: lazy.
    std::vector<float> row(kPrompt, l % 2 ? 0.0f : 1.0f / kPrompt);
    if (l % 2) row.front() = row.back() = 0.5f;
    obs.window_attention.assign(kHeads, row);
    simlayerkv->on_prefill_layer(lazy_cache, obs);
  }
  lazy_cache.advance(kPrompt);
  const KeptPanel lazy = capture_kept("simlayerkv", lazy_cache, *simlayerkv, kPrompt);
  EXPECT_EQ(lazy.layer_notes, (std::vector<std::string>{"", "lazy", "", "lazy"}));
  const std::string svg = kept_map_svg("s", std::vector<std::string>(kPrompt, "x"), {lazy}, {});
  EXPECT_EQ(count(svg, "fill=\"#8e44ad\"><title>layer "), 2);
  EXPECT_NE(svg.find("2 of 4 layers lazy"), std::string::npos);
}

TEST(KeptMap, MarksAndTheTokenAxis) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 64);
  fill(cache);
  auto full = make_strategy("full");
  std::vector<KeptPanel> panels = {capture_kept("a", cache, *full, kPrompt),
                                   capture_kept("b", cache, *full, kPrompt)};
  std::vector<std::string> tokens(kPrompt, "w");
  tokens[3] = "<&>";
  const std::string svg = kept_map_svg("two & more", tokens, panels, KeptMarks{9, {{4, 6}}});
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_EQ(count(svg, "<g class=\"panel\""), 2);
  EXPECT_EQ(count(svg, "<title>needle: tokens 4-5</title>"), 2) << "on every panel";
  EXPECT_EQ(count(svg, "stroke=\"#d62728\""), 2) << "the question's start on every panel";
  EXPECT_NE(svg.find("token 3: &lt;&amp;&gt;"), std::string::npos) << "hover text, escaped";
  EXPECT_NE(svg.find("two &amp; more"), std::string::npos);
  EXPECT_EQ(svg.find("<&>"), std::string::npos) << "nothing unescaped";
}

TEST(KeptMap, TokenRangesAndTexts) {
  // The random models' byte tokenizer: token 2 + b spells byte b, BOS spells nothing.
  ModelFile f("random:smollm2-135m");
  const Tokenizer& tok = f.tokenizer();
  const std::string text = "hello world";
  const std::vector<int32_t> ids = tok.encode(text, true);
  ASSERT_EQ(ids.size(), text.size() + 1);
  EXPECT_EQ(token_ranges(tok, ids, text, {{6, 11}, {0, 1}}),
            (std::vector<std::pair<int, int>>{{7, 12}, {1, 2}}));
  const std::vector<std::string> texts = token_texts(tok, tok.encode("a\n\x01\xC3", false));
  EXPECT_EQ(texts, (std::vector<std::string>{"a", "\\n", "\\x01", "\\xC3"}));
  EXPECT_EQ(token_texts(tok, tok.encode("\xC3\xA9", false)),
            (std::vector<std::string>{"\\xC3", "\\xA9"})) << "a character split over tokens";
}

}  // namespace
}  // namespace kvlm
