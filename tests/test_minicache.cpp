// MiniCache: the spec's toys, the merge ops against a scalar reference, the cache's merged
// storage mode (restore, order, positions, exact byte savings, clear, compaction), the
// strategy's retention and timing, and the forward pass with nothing merged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>

#include "cache_contents.h"
#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/merged_layers.h"
#include "kv/strategy.h"
#include "backend_fixture.h"
#include "model_fixture.h"

namespace kvlm {
namespace {

using test::Buf;
using test::observer;
using test::random_vector;

// ---- scalar reference (double precision), written from the spec's formulas ----------

double norm(const float* x, int d) {
  double s = 0;
  for (int c = 0; c < d; c++) s += double(x[c]) * x[c];
  return std::sqrt(s);
}

double ref_angle(const float* a, const float* b, int d) {
  double dot = 0;
  for (int c = 0; c < d; c++) dot += double(a[c]) * b[c];
  return std::acos(std::clamp(dot / (norm(a, d) * norm(b, d)), -1.0, 1.0));
}

// Slerp weights of the two unit vectors; normalised lerp when sin(Omega) is tiny.
std::vector<double> ref_direction(const float* a, const float* b, int d, double t) {
  const double na = norm(a, d), nb = norm(b, d), omega = ref_angle(a, b, d);
  std::vector<double> e(d);
  if (std::sin(omega) >= 1e-3) {
    const double wa = std::sin((1 - t) * omega) / std::sin(omega);
    const double wb = std::sin(t * omega) / std::sin(omega);
    for (int c = 0; c < d; c++) e[c] = wa * a[c] / na + wb * b[c] / nb;
  } else {
    double ee = 0;
    for (int c = 0; c < d; c++) ee += std::pow(e[c] = (1 - t) * a[c] / na + t * b[c] / nb, 2);
    for (double& x : e) x /= std::sqrt(ee);
  }
  return e;
}

// What the merged cache should give back for `a` when it was merged with `b`
// (side 0: a is the lower layer's state; side 1: the upper's).
std::vector<float> ref_restore(const float* lower, const float* upper, int d, double t, int side) {
  std::vector<double> e = ref_direction(lower, upper, d, t);
  const double m = norm(side == 0 ? lower : upper, d);
  std::vector<float> out(d);
  for (int c = 0; c < d; c++) out[c] = float(e[c] * m);
  return out;
}

void expect_near(const std::vector<float>& got, const std::vector<double>& want, double tol,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); i++)
    EXPECT_NEAR(got[i], want[i], tol) << what << " [" << i << "]";
}

// Runs the three merge ops on one pair of vectors.
struct MergedPair {
  float angle;
  std::vector<float> dir, a_restored, b_restored;
  float mag_a, mag_b;
};

MergedPair merge_one(Backend& b, const std::vector<float>& x, const std::vector<float>& y,
                     float t) {
  const int d = int(x.size());
  const int32_t row = 0;
  Buf bx(b, x), by(b, y), angle(b, 1), dir(b, d), ma(b, 1), mb(b, 1), ra(b, d), rb(b, d);
  MergeBackend& ops = merge_ops(b);
  ops.pair_angles(angle.ptr, DType::F32, bx.ptr, &row, by.ptr, &row, 1, d);
  ops.merge_pair(dir.ptr, ma.ptr, mb.ptr, DType::F32, bx.ptr, &row, by.ptr, &row, 1, d, t);
  ops.restore_rows(ra.ptr, nullptr, DType::F32, dir.ptr, ma.ptr, 1, d);
  ops.restore_rows(rb.ptr, nullptr, DType::F32, dir.ptr, mb.ptr, 1, d);
  return {angle.host()[0], dir.host(), ra.host(), rb.host(), ma.host()[0], mb.host()[0]};
}

// ---- the spec's toys (t = 0.6), to 6 decimals -------------------------------------------

constexpr double k6 = 1e-6;

TEST(MiniCacheToy, OneUnitVectorsShareTheirSlerpDirection) {
  CpuBackend b(1);
  MergedPair m = merge_one(b, {0.8f, 0.6f}, {0.6f, 0.8f}, 0.6f);
  EXPECT_NEAR(m.angle, 0.283794, k6);
  expect_near(m.dir, {0.686757, 0.726887}, k6, "e");
  // The coefficients: solve e = wa * ua + wb * ub (ua, ub are the inputs, unit already).
  const double det = 0.8 * 0.8 - 0.6 * 0.6;
  EXPECT_NEAR((m.dir[0] * 0.8 - m.dir[1] * 0.6) / det, 0.404550, k6);
  EXPECT_NEAR((m.dir[1] * 0.8 - m.dir[0] * 0.6) / det, 0.605196, k6);
  EXPECT_NEAR(norm(m.dir.data(), 2), 1.0, k6);
  expect_near(m.a_restored, {0.686757, 0.726887}, k6, "a'");
  expect_near(m.b_restored, {0.686757, 0.726887}, k6, "b'");
}

TEST(MiniCacheToy, TwoMagnitudesStayPerLayer) {
  CpuBackend b(1);
  MergedPair m = merge_one(b, {1.6f, 1.2f}, {0.6f, 0.8f}, 0.6f);
  EXPECT_NEAR(m.angle, 0.283794, k6);
  EXPECT_NEAR(m.mag_a, 2.0, k6);
  EXPECT_NEAR(m.mag_b, 1.0, k6);
  expect_near(m.dir, {0.686757, 0.726887}, k6, "e");
  expect_near(m.a_restored, {1.373515, 1.453773}, k6, "a'");
  expect_near(m.b_restored, {0.686757, 0.726887}, k6, "b'");
}

TEST(MiniCacheToy, ThreeOrthogonalVectors) {
  CpuBackend b(1);
  MergedPair m = merge_one(b, {3, 0, 0}, {0, 0, 2}, 0.6f);
  EXPECT_NEAR(m.angle, M_PI / 2, k6);
  expect_near(m.dir, {0.587785, 0, 0.809017}, k6, "e");
  expect_near(m.a_restored, {1.763356, 0, 2.427051}, k6, "a'");
  expect_near(m.b_restored, {1.175571, 0, 1.618034}, k6, "b'");
}

// Toy 3 through the strategy: next to toy 1's pair it has the larger angle, so with
// retain = 0.5 (one of two tokens) it is kept unmerged and restores exactly. The gamma
// rule agrees at gamma = 0.5: angles 0.283794 and pi/2 put the threshold at
// 0.283794 + 0.5 (1.570796 - 0.283794) = 0.927295 (on d = angle / pi alike).
TEST(MiniCacheToy, ThreeRetainedRestoresExactly) {
  for (const char* rule : {"retain=0.5", "gamma=0.5"}) {
    SCOPED_TRACE(rule);
    CpuBackend b(1);
    KVCache cache(b, 2, 1, 3, 16);
    const std::vector<float> lower = {0.8f, 0.6f, 0, 3, 0, 0};  // token 0: toy 1, token 1: toy 3
    const std::vector<float> upper = {0.6f, 0.8f, 0, 0, 0, 2};
    Buf lo(b, lower), up(b, upper);
    cache.append(0, lo.ptr, lo.ptr, 3, 0, 2);
    cache.append(1, up.ptr, up.ptr, 3, 0, 2);
    cache.advance(2);
    make_strategy(std::string("minicache:start=0,") + rule)->after_prefill(cache);
    ASSERT_EQ(cache.shared_length(0, 0), 1);
    EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1}));
    for (int layer : {0, 1}) {
      const KVHeadView v = cache.view(layer)[0];
      ASSERT_EQ(v.len, 2);
      std::vector<float> keys(test::f32_rows(v.keys), test::f32_rows(v.keys) + 6),
          values(test::f32_rows(v.values), test::f32_rows(v.values) + 6);
      for (int c = 0; c < 2; c++)
        EXPECT_NEAR(keys[c], (std::vector<double>{0.686757, 0.726887})[c], k6);
      EXPECT_EQ(keys[2], 0.0f);
      const std::vector<float>& original = layer == 0 ? lower : upper;
      for (int c = 3; c < 6; c++)
        EXPECT_EQ(keys[c], original[c]) << "retained token, layer " << layer;
      EXPECT_EQ(keys, values);
    }
  }
}

// Two layers, one head, head_dim 4: token i's key and value are [1, 0, 0, 0] in layer 0
// and [cos a, sin a, 0, 0] in layer 1 (a = key_angles[i], value_angles[i]), so the angles
// are known exactly. Magnitudes are 1.
struct AngleToy {
  CpuBackend b{1};
  KVCache cache{b, 2, 1, 4, 16};
  AngleToy(const std::vector<double>& key_angles, const std::vector<double>& value_angles) {
    const int n = int(key_angles.size());
    std::vector<float> lower(size_t(n) * 4, 0.0f), upper_keys(size_t(n) * 4, 0.0f),
        upper_values(size_t(n) * 4, 0.0f);
    for (int i = 0; i < n; i++) {
      lower[size_t(i) * 4] = 1;
      upper_keys[size_t(i) * 4] = float(std::cos(key_angles[i]));
      upper_keys[size_t(i) * 4 + 1] = float(std::sin(key_angles[i]));
      upper_values[size_t(i) * 4] = float(std::cos(value_angles[i]));
      upper_values[size_t(i) * 4 + 1] = float(std::sin(value_angles[i]));
    }
    Buf lo(b, lower), uk(b, upper_keys), uv(b, upper_values);
    cache.append(0, lo.ptr, lo.ptr, 4, 0, n);
    cache.append(1, uk.ptr, uv.ptr, 4, 0, n);
    cache.advance(n);
  }
  // Slot `slot` of a layer's restored keys (values), first two components.
  std::vector<float> row(int layer, int slot, bool keys) const {
    const KVHeadView v = cache.view(layer)[0];
    const float* r = test::f32_rows(keys ? v.keys : v.values) + size_t(slot) * 4;
    return {r[0], r[1]};
  }
};

// The paper's threshold: keep unmerged d > d_min + gamma (d_max - d_min), d = angle / pi.
// Angles 0.4, 1.0, 0.1, 0.2 (d = 0.127324, 0.318310, 0.031831, 0.063662):
//   gamma = 0.5:  0.031831 + 0.5 * 0.286479 = 0.175070 -> token 1 stays unmerged
//   gamma = 0.25: 0.031831 + 0.25 * 0.286479 = 0.103451 -> tokens 0 and 1
//   gamma = 0:    d > d_min -> tokens 0, 1, 3;   gamma = 1: nothing exceeds d_max
// Merged tokens take the first slots, the kept ones follow.
TEST(MiniCacheToy, FourGammaThresholdOnTheAngleRange) {
  const std::vector<double> angles = {0.4, 1.0, 0.1, 0.2};
  struct Case {
    const char* gamma;
    std::vector<int32_t> positions;
    int merged;
  };
  for (const Case& c : {Case{"0.5", {0, 2, 3, 1}, 3}, Case{"0.25", {2, 3, 0, 1}, 2},
                        Case{"0", {2, 0, 1, 3}, 1}, Case{"1", {0, 1, 2, 3}, 4}}) {
    AngleToy toy(angles, angles);
    make_strategy(std::string("minicache:start=0,gamma=") + c.gamma)->after_prefill(toy.cache);
    EXPECT_EQ(toy.cache.shared_length(0, 0), c.merged) << "gamma " << c.gamma;
    EXPECT_EQ(toy.cache.shared_length(1, 0), c.merged) << "gamma " << c.gamma;
    EXPECT_EQ(toy.cache.positions(0, 0), c.positions) << "gamma " << c.gamma;
  }
}

// Keys and values deciding apart (separate=1), retain = 0.5: two of four halves each.
//   token:        0     1     2     3
//   key angle:    1.0   0.1   0.2   1.2   -> keys kept: 3, 0
//   value angle:  0.1   1.0   0.2   1.2   -> values kept: 3, 1
// Token 3 stays a row; token 0 is shared with its key exact, token 1 with its value exact,
// token 2 merged in both. A merged half of unit vectors restores to the direction at
// t * angle: 0.06 for angle 0.1 -> [0.998201, 0.059964]; 0.12 -> [0.992809, 0.119712].
// Joint (the default) ranks by max(key, value) = 1.0, 1.0, 0.2, 1.2: tokens 3 and 0 stay
// (the tie goes to the earlier slot). Both keep four halves: the same bytes.
TEST(MiniCacheToy, FiveKeysAndValuesDecideApart) {
  const std::vector<double> key_angles = {1.0, 0.1, 0.2, 1.2}, value_angles = {0.1, 1.0, 0.2, 1.2};
  AngleToy apart(key_angles, value_angles), joint(key_angles, value_angles);
  make_strategy("minicache:start=0,retain=0.5,separate=1")->after_prefill(apart.cache);
  make_strategy("minicache:start=0,retain=0.5")->after_prefill(joint.cache);

  ASSERT_EQ(apart.cache.shared_length(0, 0), 3);
  EXPECT_EQ(apart.cache.positions(1, 0), (std::vector<int32_t>{0, 1, 2, 3}));
  const MergedLayers::ExactCounts exact = apart.cache.merged_layers().exact_counts(0, 0);
  EXPECT_EQ(exact.keys, 1);
  EXPECT_EQ(exact.values, 1);
  const std::vector<float> at_006 = {0.998201f, 0.059964f}, at_012 = {0.992809f, 0.119712f};
  const std::vector<float> lower = {1, 0};
  auto upper = [](double a) { return std::vector<float>{float(std::cos(a)), float(std::sin(a))}; };
  auto expect_row = [&](int layer, int slot, bool keys, const std::vector<float>& want) {
    const std::vector<float> got = apart.row(layer, slot, keys);
    for (int c = 0; c < 2; c++)
      EXPECT_NEAR(got[c], want[c], 1e-6) << "layer " << layer << " slot " << slot
                                         << (keys ? " key" : " value");
  };
  for (int layer : {0, 1}) {
    expect_row(layer, 0, true, layer == 0 ? lower : upper(1.0));  // token 0: key exact
    expect_row(layer, 0, false, at_006);                          //          value merged
    expect_row(layer, 1, true, at_006);                           // token 1: key merged
    expect_row(layer, 1, false, layer == 0 ? lower : upper(1.0)); //          value exact
    expect_row(layer, 2, true, at_012);                           // token 2: both merged
    expect_row(layer, 2, false, at_012);
    expect_row(layer, 3, true, layer == 0 ? lower : upper(1.2));  // token 3: a row
  }
  // Exact halves are bit-exact.
  EXPECT_EQ(apart.row(1, 0, true), upper(1.0));
  EXPECT_EQ(apart.row(1, 1, false), upper(1.0));

  ASSERT_EQ(joint.cache.shared_length(0, 0), 2);
  EXPECT_EQ(joint.cache.positions(0, 0), (std::vector<int32_t>{1, 2, 0, 3}));
  // Rows: 16 bytes. Joint: 2 tokens x 2 layers x K,V rows (128) + 2 shared tokens x K,V x
  // (direction + 2 magnitudes, 24) = 224. Apart: 1 token's rows (64) + per half 2 merged
  // (48) and 1 exact in both layers (32) = 224.
  EXPECT_EQ(apart.cache.stats().bytes_held, 224u);
  EXPECT_EQ(joint.cache.stats().bytes_held, 224u);
}

// ---- the ops against the scalar reference -------------------------------------------------

// Parameterised by backend like the Kernels suite, so a GPU backend runs the same cases.
class MiniCacheOps : public test::BackendTest {};

TEST_P(MiniCacheOps, GatheredPairsMatchTheReference) {
  Backend& b = *backend;
  for (int d : {3, 64, 80}) {
    const int rows = 40, n = 300;  // n > rows: rows repeat, in any order
    auto a = random_vector(size_t(rows) * d, 1 + d),
         c = random_vector(size_t(rows) * d, 2 + d, 3.0f);
    std::mt19937 rng(d);
    std::vector<int32_t> a_rows(n), c_rows(n);
    for (int i = 0; i < n; i++)
      a_rows[i] = int32_t(rng() % rows), c_rows[i] = int32_t(rng() % rows);
    Buf ba(b, a), bc(b, c), angle(b, n), dir(b, size_t(n) * d), ma(b, n), mc(b, n),
        out(b, size_t(n) * d);
    MergeBackend& ops = merge_ops(b);
    ops.pair_angles(angle.ptr, DType::F32, ba.ptr, a_rows.data(), bc.ptr, c_rows.data(), n, d);
    for (float t : {0.0f, 0.3f, 0.6f, 1.0f}) {
      ops.merge_pair(dir.ptr, ma.ptr, mc.ptr, DType::F32, ba.ptr, a_rows.data(), bc.ptr, c_rows.data(), n, d, t);
      ops.restore_rows(out.ptr, nullptr, DType::F32, dir.ptr, mc.ptr, n, d);
      auto angles = angle.host(), dirs = dir.host(), mags_a = ma.host(), mags_c = mc.host(),
           restored = out.host();
      for (int i = 0; i < n; i++) {
        const float* x = a.data() + size_t(a_rows[i]) * d;
        const float* y = c.data() + size_t(c_rows[i]) * d;
        ASSERT_NEAR(angles[i], ref_angle(x, y, d), 2e-5) << "d=" << d << " pair " << i;
        ASSERT_NEAR(mags_a[i], norm(x, d), 1e-5 * norm(x, d));
        ASSERT_NEAR(mags_c[i], norm(y, d), 1e-5 * norm(y, d));
        std::vector<double> e = ref_direction(x, y, d, t);
        for (int k = 0; k < d; k++) {
          ASSERT_NEAR(dirs[size_t(i) * d + k], e[k], 2e-5)
              << "d=" << d << " t=" << t << " pair " << i;
          ASSERT_NEAR(restored[size_t(i) * d + k], e[k] * norm(y, d), 2e-5 * norm(y, d));
        }
      }
    }
  }
}

TEST_P(MiniCacheOps, NearlyParallelPairsUseNormalisedLerp) {
  Backend& b = *backend;
  const int d = 64;
  auto x = random_vector(d, 7);
  auto noise = random_vector(d, 8, 1e-6f);
  std::vector<float> y(d), opposite(d);
  for (int c = 0; c < d; c++) y[c] = 2.5f * x[c] + noise[c], opposite[c] = -x[c];
  MergedPair m = merge_one(b, x, y, 0.6f);
  EXPECT_LT(m.angle, 1e-3f);
  std::vector<double> e = ref_direction(x.data(), y.data(), d, 0.6);  // the nlerp branch
  for (int c = 0; c < d; c++) {
    EXPECT_TRUE(std::isfinite(m.dir[c]));
    EXPECT_NEAR(m.dir[c], e[c], 1e-6);
    EXPECT_NEAR(m.a_restored[c], x[c], 1e-5);  // parallel: merging loses nothing
    EXPECT_NEAR(m.b_restored[c], y[c], 1e-5);
  }
  m = merge_one(b, x, x, 0.6f);  // exactly parallel: Omega = 0
  for (int c = 0; c < d; c++) EXPECT_NEAR(m.a_restored[c], x[c], 1e-5);
  m = merge_one(b, x, opposite, 0.6f);  // opposite: lerp leans to the heavier side
  EXPECT_NEAR(m.angle, M_PI, 1e-3);
  for (int c = 0; c < d; c++) EXPECT_NEAR(m.b_restored[c], opposite[c], 1e-5);
  m = merge_one(b, x, opposite, 0.5f);  // opposite at t = 0.5 cancels: b's direction
  for (int c = 0; c < d; c++) EXPECT_NEAR(m.b_restored[c], opposite[c], 1e-5);
}

TEST_P(MiniCacheOps, ZeroMagnitudeHasNoAngle) {
  Backend& b = *backend;
  const std::vector<float> zero(4, 0.0f), x = {1, -2, 0.5f, 3};
  MergedPair m = merge_one(b, zero, x, 0.6f);
  EXPECT_EQ(m.angle, -1.0f);  // the strategy keeps such tokens unmerged
  // Still defined: the zero row takes the other's direction, and both restore exactly.
  EXPECT_EQ(m.mag_a, 0.0f);
  for (int c = 0; c < 4; c++) {
    EXPECT_EQ(m.a_restored[c], 0.0f);
    EXPECT_NEAR(m.b_restored[c], x[c], 1e-6);
  }
  EXPECT_EQ(merge_one(b, x, zero, 0.6f).angle, -1.0f);
  m = merge_one(b, zero, zero, 0.6f);
  EXPECT_EQ(m.angle, -1.0f);
  for (float v : m.dir) EXPECT_EQ(v, 0.0f);
}

// Restoring into given rows (shared tokens whose key or value is kept exact sit between
// merged ones), and a null magnitude copying the rows bit for bit.
TEST_P(MiniCacheOps, RestoreScattersRowsAndCopiesWithoutMagnitude) {
  Backend& b = *backend;
  const int d = 70, n = 5, out_rows_total = 9;
  auto dir = random_vector(size_t(n) * d, 11);
  const std::vector<float> mag = {2.0f, -1.0f, 0.5f, 3.0f, 1.0f};
  const std::vector<int32_t> rows = {7, 0, 3, 8, 1};
  const std::vector<float> untouched(size_t(out_rows_total) * d, 42.0f);
  Buf bdir(b, dir), bmag(b, mag), scaled(b, untouched), copied(b, untouched);
  MergeBackend& ops = merge_ops(b);
  ops.restore_rows(scaled.ptr, rows.data(), DType::F32, bdir.ptr, bmag.ptr, n, d);
  ops.restore_rows(copied.ptr, rows.data(), DType::F32, bdir.ptr, nullptr, n, d);
  const std::vector<float> got_scaled = scaled.host(), got_copied = copied.host();
  std::vector<bool> written(out_rows_total, false);
  for (int i = 0; i < n; i++) {
    written[rows[i]] = true;
    for (int c = 0; c < d; c++) {
      const size_t at = size_t(rows[i]) * d + c;
      EXPECT_EQ(got_scaled[at], dir[size_t(i) * d + c] * mag[i]) << "row " << rows[i];
      EXPECT_EQ(got_copied[at], dir[size_t(i) * d + c]) << "row " << rows[i];
    }
  }
  for (int r = 0; r < out_rows_total; r++)
    if (!written[r])
      for (int c = 0; c < d; c++) {
        EXPECT_EQ(got_scaled[size_t(r) * d + c], 42.0f) << "row " << r << " is not a target";
        EXPECT_EQ(got_copied[size_t(r) * d + c], 42.0f);
      }
}

INSTANTIATE_TEST_SUITE_P(, MiniCacheOps, ::testing::Values("cpu", "cuda"), test::backend_param_name);

// ---- the cache's merged storage ---------------------------------------------------------

constexpr int kLayers = 4, kHeads = 2, kDim = 16, kPrompt = 100, kChunk = 64;
constexpr size_t kRow = kDim * sizeof(float);

// A cache whose layers 2 and 3 hold related states (layer 3 = layer 2 + noise of a
// per-token scale, so angles vary), with host copies of everything appended.
struct Filled {
  CpuBackend backend{1};
  KVCache cache{backend, kLayers, kHeads, kDim, 1000};
  std::vector<std::vector<float>> keys{kLayers}, values{kLayers};  // [layer][pos][head][dim]
  std::mt19937 rng{42};

  void append(int T) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> scale(0.05f, 1.5f);
    const int first = cache.tokens_seen();
    for (auto* states : {&keys, &values})
      for (int t = 0; t < T; t++)
        for (int h = 0; h < kHeads; h++) {
          const float sigma = scale(rng);
          for (int l = 0; l < kLayers; l++)
            for (int c = 0; c < kDim; c++)
              (*states)[l].push_back(l == 3 ? (*states)[2][((first + t) * kHeads + h) * kDim + c] +
                                                  sigma * normal(rng)
                                            : normal(rng));
        }
    for (int l = 0; l < kLayers; l++) {
      const size_t offset = size_t(first) * kHeads * kDim;
      Buf k(backend, std::vector<float>(keys[l].begin() + offset, keys[l].end()));
      Buf v(backend, std::vector<float>(values[l].begin() + offset, values[l].end()));
      cache.append(l, k.ptr, v.ptr, kHeads * kDim, first, T);
    }
    cache.advance(T);
  }
  const float* key(int layer, int pos, int head) const {
    return keys[layer].data() + (size_t(pos) * kHeads + head) * kDim;
  }
  const float* value(int layer, int pos, int head) const {
    return values[layer].data() + (size_t(pos) * kHeads + head) * kDim;
  }
  // The tokens the rule keeps unmerged among `candidates`: the n with the largest
  // max(key angle, value angle) between layers 2 and 3.
  std::vector<int32_t> largest_angles(int head, std::vector<int32_t> candidates, int n) const {
    auto score = [&](int32_t p) {
      return std::max(ref_angle(key(2, p, head), key(3, p, head), kDim),
                      ref_angle(value(2, p, head), value(3, p, head), kDim));
    };
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](int32_t x, int32_t y) { return score(x) > score(y); });
    candidates.resize(n);
    std::sort(candidates.begin(), candidates.end());
    return candidates;
  }
};

// Every slot of a merged layer: merged slots restore from the reference merge, the rest
// are the original rows, bit-exact.
void expect_restored(const Filled& f, int layer, double t) {
  std::vector<KVHeadView> view = f.cache.view(layer);
  for (int h = 0; h < kHeads; h++) {
    const std::vector<int32_t>& positions = f.cache.positions(layer, h);
    ASSERT_EQ(view[h].len, int(positions.size()));
    for (int slot = 0; slot < view[h].len; slot++) {
      const int p = positions[slot];
      const float* keys = test::f32_rows(view[h].keys) + size_t(slot) * kDim;
      const float* values = test::f32_rows(view[h].values) + size_t(slot) * kDim;
      if (slot < f.cache.shared_length(layer, h)) {
        auto k = ref_restore(f.key(2, p, h), f.key(3, p, h), kDim, t, layer - 2);
        auto v = ref_restore(f.value(2, p, h), f.value(3, p, h), kDim, t, layer - 2);
        for (int c = 0; c < kDim; c++) {
          ASSERT_NEAR(keys[c], k[c], 1e-5 * (1 + std::fabs(k[c])))
              << "layer " << layer << " slot " << slot;
          ASSERT_NEAR(values[c], v[c], 1e-5 * (1 + std::fabs(v[c])));
        }
      } else {
        for (int c = 0; c < kDim; c++) {
          ASSERT_EQ(keys[c], f.key(layer, p, h)[c]) << "layer " << layer << " slot " << slot;
          ASSERT_EQ(values[c], f.value(layer, p, h)[c]);
        }
      }
    }
  }
}

TEST(MiniCacheCache, MergeRestoresRetainsAndFreesExactBytes) {
  Filled f;
  f.append(kPrompt);
  const KVStats before = f.cache.stats();
  make_strategy("minicache:start=2,retain=0.1")->after_prefill(f.cache);
  const int retained = 10, merged = kPrompt - retained;  // ceil(0.1 * 100)

  for (int h = 0; h < kHeads; h++) {
    EXPECT_EQ(f.cache.shared_length(2, h), merged);
    EXPECT_EQ(f.cache.shared_length(3, h), merged);
    EXPECT_EQ(f.cache.shared_length(1, h), 0);
    // Slots: merged tokens in order, then the retained ones (largest angles) in order.
    std::vector<int32_t> all(kPrompt);
    std::iota(all.begin(), all.end(), 0);
    std::vector<int32_t> kept = f.largest_angles(h, all, retained), expected;
    std::set_difference(all.begin(), all.end(), kept.begin(), kept.end(),
                        std::back_inserter(expected));
    expected.insert(expected.end(), kept.begin(), kept.end());
    EXPECT_EQ(f.cache.positions(2, h), expected) << "head " << h;
    EXPECT_EQ(f.cache.positions(3, h), expected) << "head " << h;
  }
  EXPECT_EQ(f.cache.merged_layers().partner(2), 3);
  EXPECT_EQ(f.cache.merged_layers().partner(3), 2);
  EXPECT_EQ(f.cache.merged_layers().partner(0), -1);
  expect_restored(f, 2, 0.6);
  expect_restored(f, 3, 0.6);

  // Plain layers stay zero-copy and untouched.
  const KVHeadView plain = f.cache.view(0)[1];
  EXPECT_EQ(plain.keys, f.cache.view(0)[1].keys);
  for (int c = 0; c < kDim; c++) EXPECT_EQ(test::f32_rows(plain.keys)[5 * kDim + c], f.key(0, 5, 1)[c]);

  // Held: per head, the pair gave up one layer's merged rows (K and V) and gained four
  // magnitudes (K and V, two layers) per merged token.
  const KVStats after = f.cache.stats();
  const size_t saved_per_head = merged * kRow * 2 - 2 * size_t(merged) * 2 * sizeof(float);
  EXPECT_EQ(before.bytes_held - after.bytes_held, kHeads * saved_per_head);
  // Allocated: each layer's rows shrink from 128 (100 rounded up) to 64 (10 rounded up);
  // the shared storage is allocated exactly.
  const size_t rows_freed = 2 * kHeads * 2 * size_t(2 * kChunk - kChunk) * kRow;
  const size_t shared = kHeads * (2 * size_t(merged) * kRow + 4 * size_t(merged) * sizeof(float));
  EXPECT_EQ(before.bytes_allocated - after.bytes_allocated, rows_freed - shared);
  EXPECT_EQ(after.bytes_full, before.bytes_full);
  EXPECT_EQ(after.lengths, before.lengths);  // every layer still attends to 100 tokens
  EXPECT_EQ(after.bytes_scratch, 2 * size_t(4 * kChunk) * kRow);  // 2 heads x 100 rows, rounded
}

// separate=1 on random states: each half keeps the 10 of 100 with its own largest angles;
// a token kept in both stays a row, the others are shared with their kept half exact.
// Same bytes as the joint rule (20 halves kept either way).
TEST(MiniCacheCache, SeparateKeepsEachHalfByItsOwnAngle) {
  Filled f, joint;
  f.append(kPrompt);
  joint.append(kPrompt);
  make_strategy("minicache:start=2,retain=0.1,separate=1")->after_prefill(f.cache);
  make_strategy("minicache:start=2,retain=0.1")->after_prefill(joint.cache);
  EXPECT_EQ(f.cache.stats().bytes_held, joint.cache.stats().bytes_held);
  for (int h = 0; h < kHeads; h++) {
    auto largest = [&](auto angle_of) {
      std::vector<int32_t> order(kPrompt);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t x, int32_t y) { return angle_of(x) > angle_of(y); });
      std::vector<bool> kept(kPrompt, false);
      for (int i = 0; i < 10; i++) kept[order[i]] = true;
      return kept;
    };
    const std::vector<bool> keep_key = largest([&](int32_t p) {
      return ref_angle(f.key(2, p, h), f.key(3, p, h), kDim);
    });
    const std::vector<bool> keep_value = largest([&](int32_t p) {
      return ref_angle(f.value(2, p, h), f.value(3, p, h), kDim);
    });
    std::vector<int32_t> shared, rows;
    int exact_keys = 0, exact_values = 0;
    for (int p = 0; p < kPrompt; p++) {
      if (keep_key[p] && keep_value[p]) {
        rows.push_back(p);
        continue;
      }
      shared.push_back(p);
      exact_keys += keep_key[p];
      exact_values += keep_value[p];
    }
    std::vector<int32_t> expected = shared;
    expected.insert(expected.end(), rows.begin(), rows.end());
    ASSERT_EQ(f.cache.positions(2, h), expected) << "head " << h;
    EXPECT_EQ(f.cache.positions(3, h), expected) << "head " << h;
    const MergedLayers::ExactCounts exact = f.cache.merged_layers().exact_counts(2, h);
    EXPECT_EQ(exact.keys, exact_keys);
    EXPECT_EQ(exact.values, exact_values);
    EXPECT_GT(exact.keys, 0) << "the random states should split some tokens";

    for (int layer : {2, 3}) {
      const KVHeadView v = f.cache.view(layer)[h];
      for (int slot = 0; slot < int(shared.size()); slot++) {
        const int p = shared[slot];
        for (bool is_key : {true, false}) {
          const float* got = test::f32_rows(is_key ? v.keys : v.values) + size_t(slot) * kDim;
          const float* lower = is_key ? f.key(2, p, h) : f.value(2, p, h);
          const float* upper = is_key ? f.key(3, p, h) : f.value(3, p, h);
          if ((is_key ? keep_key : keep_value)[p]) {
            for (int c = 0; c < kDim; c++)
              ASSERT_EQ(got[c], (layer == 2 ? lower : upper)[c]) << "exact, slot " << slot;
          } else {
            const std::vector<float> want = ref_restore(lower, upper, kDim, 0.6, layer - 2);
            for (int c = 0; c < kDim; c++)
              ASSERT_NEAR(got[c], want[c], 1e-5 * (1 + std::fabs(want[c]))) << "merged, slot " << slot;
          }
        }
      }
    }
  }
}

TEST(MiniCacheCache, NewTokensComeLastAndAttendLikeAnExplicitlyRestoredCache) {
  Filled f;
  f.append(kPrompt);
  make_strategy("minicache:start=2,retain=0.1,t=0.3")->after_prefill(f.cache);
  const int T = 3, n_heads = 4;
  f.append(T);  // a continued prefill after the merge
  expect_restored(f, 2, 0.3);
  expect_restored(f, 3, 0.3);
  for (int layer : {2, 3}) {
    for (int h = 0; h < kHeads; h++) {
      const auto& positions = f.cache.positions(layer, h);
      EXPECT_EQ(std::vector<int32_t>(positions.end() - T, positions.end()),
                (std::vector<int32_t>{kPrompt, kPrompt + 1, kPrompt + 2}));
      EXPECT_EQ(f.cache.length(layer, h), kPrompt + T);
    }
    // The same slots, restored by the reference into a plain cache.
    KVCache plain(f.backend, 1, kHeads, kDim, 1000);
    std::vector<float> keys(size_t(kPrompt + T) * kHeads * kDim), values(keys.size());
    for (int h = 0; h < kHeads; h++)
      for (int slot = 0; slot < kPrompt + T; slot++) {
        const int p = f.cache.positions(layer, h)[slot];
        const bool merged = slot < f.cache.shared_length(layer, h);
        auto k = merged ? ref_restore(f.key(2, p, h), f.key(3, p, h), kDim, 0.3, layer - 2)
                        : std::vector<float>(f.key(layer, p, h), f.key(layer, p, h) + kDim);
        auto v = merged ? ref_restore(f.value(2, p, h), f.value(3, p, h), kDim, 0.3, layer - 2)
                        : std::vector<float>(f.value(layer, p, h), f.value(layer, p, h) + kDim);
        std::copy(k.begin(), k.end(), keys.begin() + (size_t(slot) * kHeads + h) * kDim);
        std::copy(v.begin(), v.end(), values.begin() + (size_t(slot) * kHeads + h) * kDim);
      }
    Buf bk(f.backend, keys), bv(f.backend, values);
    plain.append(0, bk.ptr, bv.ptr, kHeads * kDim, 0, kPrompt + T);

    auto q = random_vector(size_t(T) * n_heads * kDim, 99, 2.0f);
    Buf bq(f.backend, q), merged_out(f.backend, q.size()), plain_out(f.backend, q.size());
    f.backend.attention(merged_out.ptr, bq.ptr, f.cache.view(layer), T, n_heads, kDim);
    f.backend.attention(plain_out.ptr, bq.ptr, plain.view(0), T, n_heads, kDim);
    auto got = merged_out.host(), want = plain_out.host();
    for (size_t i = 0; i < got.size(); i++) ASSERT_NEAR(got[i], want[i], 1e-5) << "layer " << layer;
  }
}

TEST(MiniCacheCache, ClearForgetsMergesAndTheCacheWorksAgain) {
  Filled f;
  f.append(kPrompt);
  auto strategy = make_strategy("minicache:start=2,retain=0");
  strategy->after_prefill(f.cache);
  EXPECT_EQ(f.cache.shared_length(2, 0), kPrompt);
  f.cache.view(3);
  f.cache.clear();
  KVStats st = f.cache.stats();
  EXPECT_EQ(st.bytes_held, 0u);
  EXPECT_EQ(st.bytes_allocated, 0u);
  EXPECT_EQ(st.bytes_scratch, 0u);
  EXPECT_EQ(f.cache.merged_layers().partner(2), -1);
  EXPECT_EQ(f.cache.shared_length(2, 0), 0);
  EXPECT_EQ(f.cache.length(3, 1), 0);

  for (int l = 0; l < kLayers; l++) f.keys[l].clear(), f.values[l].clear();
  f.append(20);
  EXPECT_EQ(f.cache.view(2)[0].len, 20);
  strategy->after_prefill(f.cache);
  EXPECT_EQ(f.cache.shared_length(3, 1), 20);
  expect_restored(f, 3, 0.6);
}

// A chat turn whose merge is taken back: the shared storage, the pairing and the rows
// the merge moved all return.
TEST(MiniCacheCache, RollbackUndoesMergesAndPairing) {
  for (const char* spec : {"minicache:start=2,retain=0.1", "minicache:start=2,retain=0.1,separate=1"})
  for (bool merged_before : {false, true}) {
    Filled f;
    f.append(kPrompt);
    auto strategy = make_strategy(spec);
    if (merged_before) strategy->after_prefill(f.cache);
    const test::CacheContents before = test::contents(f.cache);
    f.cache.checkpoint();
    f.append(30);
    strategy->after_prefill(f.cache);
    ASSERT_GT(f.cache.shared_length(2, 1), before.shared[2][1]);
    f.cache.rollback();
    EXPECT_TRUE(test::contents(f.cache) == before) << spec << ", merged before: " << merged_before;
    EXPECT_EQ(f.cache.merged_layers().partner(2), merged_before ? 3 : -1);
  }
}

TEST(MiniCacheCache, CompactKeepsMergedSlotsAndEvictsRows) {
  Filled f;
  f.append(kPrompt);
  make_strategy("minicache:start=2,retain=0.1")->after_prefill(f.cache);
  const int merged = f.cache.shared_length(2, 0);
  std::vector<int32_t> keep(merged);
  std::iota(keep.begin(), keep.end(), 0);
  EXPECT_THROW(f.cache.compact(2, 0, std::vector<int32_t>(keep.begin() + 1, keep.end())),
               std::invalid_argument);
  const std::vector<int32_t> before = f.cache.positions(2, 0);
  keep.push_back(merged + 1);
  keep.push_back(merged + 5);
  f.cache.compact(2, 0, keep);
  EXPECT_EQ(f.cache.length(2, 0), merged + 2);
  std::vector<int32_t> expected(before.begin(), before.begin() + merged);
  expected.push_back(before[merged + 1]);
  expected.push_back(before[merged + 5]);
  EXPECT_EQ(f.cache.positions(2, 0), expected);
  expect_restored(f, 2, 0.6);
}

TEST(MiniCacheCache, MergeRejectsWhatItCannotDo) {
  Filled f;
  f.append(10);
  MergedLayers& merged = f.cache.merged_layers();
  EXPECT_THROW(merged.merge(f.cache, 2, 3, 0, {1, 2}, {1}, 0.6f), std::invalid_argument);  // lengths
  EXPECT_THROW(merged.merge(f.cache, 2, 3, 0, {1}, {2}, 0.6f), std::invalid_argument);     // tokens
  EXPECT_THROW(merged.merge(f.cache, 2, 3, 0, {2, 1}, {2, 1}, 0.6f), std::invalid_argument);  // order
  EXPECT_THROW(merged.merge(f.cache, 3, 2, 0, {1}, {1}, 0.6f), std::invalid_argument);  // lower < upper
  merged.merge(f.cache, 2, 3, 0, {1}, {1}, 0.6f);
  EXPECT_THROW(merged.merge(f.cache, 2, 3, 0, {0}, {0}, 0.6f),
               std::invalid_argument);  // slot 0 is merged now
  EXPECT_THROW(merged.merge(f.cache, 1, 2, 0, {2}, {2}, 0.6f), std::invalid_argument);  // 2 is paired
}

// After eviction (snapkv+minicache) the two layers hold different tokens: only the common
// ones merge, the rest stay as rows of their layer.
TEST(MiniCacheCache, OnlyTokensBothLayersHoldAreMerged) {
  Filled f;
  f.append(20);
  std::vector<int32_t> keep_upper;  // layer 3, head 0 lost the odd tokens below 10
  for (int p = 0; p < 20; p++)
    if (p >= 10 || p % 2 == 0) keep_upper.push_back(p);
  f.cache.compact(3, 0, keep_upper);
  f.cache.compact(2, 0, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17});
  make_strategy("minicache:start=2,retain=0")->after_prefill(f.cache);
  EXPECT_EQ(f.cache.shared_length(2, 0), 13);  // even < 10 (5) and 10..17 (8)
  EXPECT_EQ(f.cache.positions(2, 0),
            (std::vector<int32_t>{0, 2, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 1, 3, 5, 7, 9}));
  EXPECT_EQ(f.cache.positions(3, 0),
            (std::vector<int32_t>{0, 2, 4, 6, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}));
  EXPECT_EQ(f.cache.shared_length(3, 1), 20);
  expect_restored(f, 2, 0.6);
  expect_restored(f, 3, 0.6);
}

// ---- the strategy -----------------------------------------------------------------------

TEST(MiniCacheStrategy, MergeEveryMergesDecodedTokensInBatches) {
  Filled f;
  f.append(kPrompt);
  auto strategy = make_strategy("minicache:start=2,retain=0.1,merge_every=4");
  strategy->after_prefill(f.cache);
  for (int step = 1; step <= 8; step++) {
    f.append(1);
    strategy->on_decode_step(f.cache, DecodeObservation{});
    for (int h = 0; h < kHeads; h++) {
      EXPECT_EQ(f.cache.length(2, h), kPrompt + step);
      // Every 4 steps the candidates (the earlier outliers + 4 new tokens) are cut back
      // by angle to ceil(0.1 * all common tokens): 11 of 104, then 11 of 108.
      const int expected_merged = step < 4 ? 90 : step < 8 ? 93 : 97;
      EXPECT_EQ(f.cache.shared_length(2, h), expected_merged) << "step " << step;
      EXPECT_EQ(f.cache.shared_length(3, h), expected_merged) << "step " << step;
    }
  }
  for (int h = 0; h < kHeads; h++) {
    std::vector<int32_t> all(kPrompt + 8);
    std::iota(all.begin(), all.end(), 0);
    const auto& positions = f.cache.positions(2, h);
    std::vector<int32_t> unmerged(positions.begin() + f.cache.shared_length(2, h), positions.end());
    // The rule applied batch by batch: a merged token never comes back.
    std::vector<int32_t> first_batch(all.begin(), all.begin() + kPrompt);
    std::vector<int32_t> kept = f.largest_angles(h, first_batch, 10);
    for (int batch = 0; batch < 2; batch++) {
      for (int i = 0; i < 4; i++) kept.push_back(kPrompt + 4 * batch + i);
      kept = f.largest_angles(h, kept, 11);
    }
    EXPECT_EQ(unmerged, kept) << "head " << h;
  }
  expect_restored(f, 2, 0.6);
  expect_restored(f, 3, 0.6);
}

TEST(MiniCacheStrategy, ZeroStatesStayUnmergedAndMergeEveryZeroNeverMergesDecode) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  // Head 0: token p holds p + c; head 1: ones. Every layer holds the same states, except
  // the value of token 2, head 1, which is zero in layer 3: it has no direction.
  std::vector<float> lower(size_t(5) * kHeads * kDim, 1.0f);
  for (int p = 0; p < 5; p++)
    for (int c = 0; c < kDim; c++) lower[size_t(p) * kHeads * kDim + c] = float(p + c);
  std::vector<float> upper_values = lower;
  std::fill_n(upper_values.begin() + (2 * kHeads + 1) * kDim, kDim, 0.0f);
  Buf lo(b, lower), up(b, upper_values);
  for (int l = 0; l < kLayers; l++)
    cache.append(l, lo.ptr, l == 3 ? up.ptr : lo.ptr, kHeads * kDim, 0, 5);
  cache.advance(5);
  auto strategy = make_strategy("minicache:retain=0");  // start = 4 / 2 = 2
  strategy->after_prefill(cache);
  EXPECT_EQ(cache.shared_length(2, 0), 5);
  EXPECT_EQ(cache.shared_length(2, 1), 4);
  EXPECT_EQ(cache.positions(3, 1), (std::vector<int32_t>{0, 1, 3, 4, 2}));
  EXPECT_EQ(test::f32_rows(cache.view(3)[1].values)[4 * kDim], 0.0f);  // a row: restored exactly

  for (int step = 0; step < 5; step++) {  // merge_every = 0: decoded tokens stay rows
    for (int l = 0; l < kLayers; l++) cache.append(l, lo.ptr, lo.ptr, kHeads * kDim, 5 + step, 1);
    cache.advance(1);
    strategy->on_decode_step(cache, DecodeObservation{});
  }
  EXPECT_EQ(cache.shared_length(2, 0), 5);
  EXPECT_EQ(cache.length(2, 0), 10);
  strategy->after_prefill(cache);  // the next chat turn merges what accumulated
  EXPECT_EQ(cache.shared_length(2, 0), 10);
  EXPECT_EQ(cache.shared_length(3, 1), 9);
}

TEST(MiniCacheStrategy, ParametersAndName) {
  EXPECT_EQ(make_strategy("minicache")->name(), "minicache:t=0.6,retain=0.05,merge_every=0");
  for (const std::string spec : {"minicache:start=3,t=0.5,retain=0.2,merge_every=16",
                                 "minicache:t=0.6,gamma=0.05,merge_every=0",
                                 "minicache:t=0.6,retain=0.05,separate=1,merge_every=0"})
    EXPECT_EQ(make_strategy(spec)->name(), spec);
  for (const char* bad : {"minicache:t=1.5", "minicache:t=-0.1", "minicache:retain=2",
                          "minicache:merge_every=-1", "minicache:start=-1", "minicache:start=x",
                          "minicache:gamma=1.5", "minicache:gamma=0.05,retain=0.1",
                          "minicache:separate=2", "minicache:window=4"})
    EXPECT_THROW(make_strategy(bad), std::invalid_argument) << bad;
  CpuBackend b(1);
  KVCache cache(b, 4, 1, 4, 8);
  EXPECT_THROW(make_strategy("minicache:start=3")->after_prefill(cache), std::invalid_argument);
  bool listed = false;
  for (const MethodInfo& m : known_methods())
    if (m.name == "minicache") {
      listed = true;
      EXPECT_NE(m.paper.find("2405.14366"), std::string::npos);
      EXPECT_EQ(m.params.size(), 6u);
    }
  EXPECT_TRUE(listed);
}

// ---- through the model ------------------------------------------------------------------

TEST(MiniCacheModel, NothingMergedGivesFullLogitsExactly) {
  KVLM_REQUIRE_MODEL();
  auto& m = test::default_model();
  std::vector<int32_t> prompt(40);
  std::iota(prompt.begin(), prompt.end(), 300);
  auto none = make_strategy("minicache:retain=1,merge_every=2");
  KVObserver none_kv = observer(*none);
  auto full_cache = m.model->make_cache(128), none_cache = m.model->make_cache(128);
  EXPECT_EQ(m.model->forward(prompt, *full_cache),
            m.model->forward(prompt, *none_cache, &none_kv));
  for (int32_t token : {500, 501, 502})
    EXPECT_EQ(m.model->forward({token}, *full_cache),
              m.model->forward({token}, *none_cache, &none_kv));
  EXPECT_EQ(none_cache->stats().bytes_held, full_cache->stats().bytes_held);

  // And with merging, by either rule and with keys and values apart: the deep half holds
  // less, and decoding goes on.
  const int n_layers = m.model->config().n_layers;
  for (const char* spec : {"minicache:merge_every=2", "minicache:separate=1,merge_every=2",
                           "minicache:gamma=0.5,merge_every=2"}) {
    auto merging = make_strategy(spec);
    KVObserver merging_kv = observer(*merging);
    auto cache = m.model->make_cache(128);
    m.model->forward(prompt, *cache, &merging_kv);
    EXPECT_LT(cache->stats().bytes_held, full_cache->stats().bytes_held) << spec;
    for (int32_t token : {500, 501, 502})
      for (float x : m.model->forward({token}, *cache, &merging_kv)) ASSERT_TRUE(std::isfinite(x));
    EXPECT_GT(cache->shared_length(n_layers / 2, 0), 0) << spec;
    EXPECT_EQ(cache->shared_length(n_layers / 2 - 1, 0), 0) << spec;
  }
}

}  // namespace
}  // namespace kvlm
