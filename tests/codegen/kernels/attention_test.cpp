// Unit test of codegen/kernels/attention.h against softmax(Q K^T scale + bias) V written directly in double
// (mask, causality, windows and valid lengths applied as -inf; a row with no key gives zeros): 4-D and 3-D
// layouts, grouped KV heads, bool and additive masks broadcast over batch / heads, causal with a past cache and the
// present outputs, sliding windows, valid KV lengths, softcap, every QK output mode; the float32 kernel
// (attention_float) on the shapes it takes; and rotary_embedding (halves and interleaved, partial rotary,
// position ids) against the rotation written out; NaN probabilities counted as 0 (nan_to_zero).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "attention.h"
#include "check.h"
#include "test_data.h"

using sdflow_kernels::AttentionGeometry;

struct Case {
  AttentionGeometry g;
  std::vector<float> q, k, v, past_k, past_v, mask;
  std::vector<bool> bool_mask;
  std::vector<int64_t> nonpad;
  bool use_mask = false, boolean = false;
};

// Expected Y and, per mode, the QK output; present K/V are the concatenations.
static void reference(const Case& c, std::vector<double>& y, std::vector<double>& qk) {
  const auto& g = c.g;
  const int64_t total = g.total(), group = g.q_heads / g.kv_heads;
  y.assign(g.batch * g.q_heads * g.q_len * g.v_head_size, 0.0);
  qk.assign(g.batch * g.q_heads * g.q_len * total, 0.0);
  auto key = [&](const std::vector<float>& fresh, const std::vector<float>& old, int64_t size, int64_t b, int64_t h,
                 int64_t j, int64_t e) -> double {
    if (!old.empty() && j < g.past_len) return old[((b * g.kv_heads + h) * g.past_len + j) * size + e];
    return fresh[g.at(b, h, j - g.past_len, e, g.kv_heads, g.kv_len, size)];
  };
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t h = 0; h < g.q_heads; ++h)
      for (int64_t i = 0; i < g.q_len; ++i) {
        const int64_t offset = !c.past_k.empty() ? g.past_len : (!c.nonpad.empty() ? c.nonpad[b] - g.q_len : 0);
        std::vector<double> s(total);
        bool any = false;
        for (int64_t j = 0; j < total; ++j) {
          double score = 0;
          for (int64_t e = 0; e < g.head_size; ++e)
            score += double(c.q[g.at(b, h, i, e, g.q_heads, g.q_len, g.head_size)]) *
                     key(c.k, c.past_k, g.head_size, b, h / group, j, e);
          score *= g.scale;
          if (g.softcap > 0) score = g.softcap * std::tanh(score / g.softcap);
          double bias = 0;
          if (c.use_mask) {
            if (j >= g.mask_keys) bias = -INFINITY;
            else {
              const int64_t at = b * g.mask_strides[0] + h * g.mask_strides[1] + i * g.mask_strides[2] + j * g.mask_strides[3];
              bias = c.boolean ? (c.bool_mask[at] ? 0.0 : -INFINITY) : c.mask[at];
            }
          }
          if (g.causal && j > i + offset) bias = -INFINITY;
          if (g.left_window >= 0 && i + offset - j > g.left_window) bias = -INFINITY;
          if (g.right_window >= 0 && j - (i + offset) > g.right_window) bias = -INFINITY;
          if (!c.nonpad.empty() && j >= c.nonpad[b]) bias = -INFINITY;
          const int64_t at = ((b * g.q_heads + h) * g.q_len + i) * total + j;
          if (g.qk_mode <= 1) qk[at] = score;
          if (g.qk_mode == 2) qk[at] = score + bias;
          any |= !std::isinf(bias);
          s[j] = score + bias;
        }
        double top = -INFINITY, sum = 0;
        for (double x : s) top = std::max(top, x);
        for (auto& x : s) x = any ? std::exp(x - top) : 0.0, sum += x;
        for (int64_t j = 0; j < total; ++j) {
          s[j] = sum > 0 ? s[j] / sum : 0.0;
          if (g.qk_mode == 3) qk[((b * g.q_heads + h) * g.q_len + i) * total + j] = s[j];
        }
        for (int64_t e = 0; e < g.v_head_size; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < total; ++j) acc += s[j] * key(c.v, c.past_v, g.v_head_size, b, h / group, j, e);
          y[g.at(b, h, i, e, g.q_heads, g.q_len, g.v_head_size)] = acc;
        }
      }
}

static bool close(const std::vector<float>& got, const std::vector<double>& want, double tolerance) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(got[i] == want[i] || std::fabs(got[i] - want[i]) <= tolerance)) {
      std::printf("  [%zu] = %g, expected %g\n", i, got[i], want[i]);
      return false;
    }
  return true;
}

static Case make(int64_t batch, int64_t hq, int64_t hkv, int64_t sq, int64_t skv, int64_t past, int64_t d,
                 int64_t dv, bool three_d) {
  Case c;
  c.g = AttentionGeometry{batch, hq, hkv, sq, skv, past, d, dv, three_d, 1.0 / std::sqrt(double(d)), 0.0, false,
                          -1, -1, 0, {0, 0, 0, 0}, 0};
  c.q = random_vector(batch * hq * sq * d);
  c.k = random_vector(batch * hkv * skv * d);
  c.v = random_vector(batch * hkv * skv * dv);
  if (past) c.past_k = random_vector(batch * hkv * past * d), c.past_v = random_vector(batch * hkv * past * dv);
  return c;
}

// Runs the general kernel (and, where it applies, the float one) and compares Y, QK and the presents.
static void run(Case c) {
  const auto& g = c.g;
  std::vector<double> want_y, want_qk;
  reference(c, want_y, want_qk);
  std::vector<float> y(want_y.size()), qk(want_qk.size()), pk(g.batch * g.kv_heads * g.total() * g.head_size),
      pv(g.batch * g.kv_heads * g.total() * g.v_head_size);
  const float* mask = c.use_mask && !c.boolean ? c.mask.data() : nullptr;
  std::vector<char> bool_storage(c.bool_mask.begin(), c.bool_mask.end());
  const bool* bmask = c.use_mask && c.boolean ? reinterpret_cast<const bool*>(bool_storage.data()) : nullptr;
  const int64_t* nonpad = c.nonpad.empty() ? nullptr : c.nonpad.data();
  const float* past_k = c.past_k.empty() ? nullptr : c.past_k.data();
  const float* past_v = c.past_v.empty() ? nullptr : c.past_v.data();
  if (c.boolean)
    sdflow_kernels::attention(c.q.data(), c.k.data(), c.v.data(), bmask, past_k, past_v, nonpad, y.data(), pk.data(),
                              pv.data(), qk.data(), g);
  else
    sdflow_kernels::attention(c.q.data(), c.k.data(), c.v.data(), mask, past_k, past_v, nonpad, y.data(), pk.data(),
                              pv.data(), qk.data(), g);
  CHECK(close(y, want_y, 1e-5));
  CHECK(close(qk, want_qk, 1e-5));
  for (int64_t b = 0; b < g.batch; ++b)  // the presents: past then new, per KV head
    for (int64_t h = 0; h < g.kv_heads; ++h)
      for (int64_t j = 0; j < g.total(); ++j) {
        const int64_t e = j % g.head_size;
        const float want = j < g.past_len ? c.past_k[((b * g.kv_heads + h) * g.past_len + j) * g.head_size + e]
                                          : c.k[g.at(b, h, j - g.past_len, e, g.kv_heads, g.kv_len, g.head_size)];
        CHECK(pk[((b * g.kv_heads + h) * g.total() + j) * g.head_size + e] == want);
      }
  if (!past_k && !nonpad && g.softcap == 0) {
    std::vector<float> fast(want_y.size());
    if (c.boolean) sdflow_kernels::attention_float(c.q.data(), c.k.data(), c.v.data(), bmask, fast.data(), g);
    else sdflow_kernels::attention_float(c.q.data(), c.k.data(), c.v.data(), mask, fast.data(), g);
    CHECK(close(fast, want_y, 1e-5));
  }
}

static void rotary_case(bool four_d, bool interleaved, int64_t rotary, bool ids) {
  const int64_t batch = 2, heads = 3, seq = 5, d = 8, half = rotary / 2, positions = 12;
  const auto x = random_vector(batch * heads * seq * d), cosines = random_vector(positions * half),
             sines = random_vector(positions * half);
  std::vector<int64_t> pos(batch * seq);
  for (int64_t i = 0; i < batch * seq; ++i) pos[i] = (i * 7) % positions;
  std::vector<float> y(x.size());
  const sdflow_kernels::RotaryGeometry g{batch, heads, seq, d, rotary, four_d, interleaved};
  if (ids) sdflow_kernels::rotary_embedding(x.data(), cosines.data(), sines.data(), pos.data(), y.data(), g);
  else sdflow_kernels::rotary_embedding(x.data(), cosines.data(), sines.data(), (const int64_t*)nullptr, y.data(), g);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s)
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t o = four_d ? ((b * heads + h) * seq + s) * d : ((b * seq + s) * heads + h) * d;
        const int64_t row = ids ? pos[b * seq + s] : b * seq + s;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t a = interleaved ? 2 * i : i, c2 = interleaved ? 2 * i + 1 : i + half;
          const double c = cosines[row * half + i], n = sines[row * half + i];
          CHECK(std::fabs(y[o + a] - (c * x[o + a] - n * x[o + c2])) < 1e-6);
          CHECK(std::fabs(y[o + c2] - (n * x[o + a] + c * x[o + c2])) < 1e-6);
        }
        for (int64_t e = rotary; e < d; ++e) CHECK(y[o + e] == x[o + e]);
      }
}

// nan_to_zero (PyTorch's Where(IsNaN(P), 0, P) fused in): a query row with a NaN gives NaN probabilities, which
// count as 0 (its output row is 0); every other row is the reference's. Both kernels.
static void nan_case() {
  Case c = make(1, 2, 2, 6, 5, 0, 8, 8, false);
  c.g.nan_to_zero = true;
  const int64_t row = 2;
  c.q[c.g.at(0, 1, row, 3, c.g.q_heads, c.g.q_len, c.g.head_size)] = NAN;
  std::vector<double> want_y, want_qk;
  reference(c, want_y, want_qk);
  for (int64_t e = 0; e < c.g.v_head_size; ++e) want_y[c.g.at(0, 1, row, e, c.g.q_heads, c.g.q_len, 8)] = 0.0;
  std::vector<float> y(want_y.size()), fast(want_y.size());
  sdflow_kernels::attention(c.q.data(), c.k.data(), c.v.data(), (const float*)nullptr, (const float*)nullptr,
                            (const float*)nullptr, (const int64_t*)nullptr, y.data(), (float*)nullptr,
                            (float*)nullptr, (float*)nullptr, c.g);
  sdflow_kernels::attention_float(c.q.data(), c.k.data(), c.v.data(), (const float*)nullptr, fast.data(), c.g);
  CHECK(close(y, want_y, 1e-5));
  CHECK(close(fast, want_y, 1e-5));
  c.g.nan_to_zero = false;  // without it, the row is NaN (ONNX's softmax of a NaN row)
  sdflow_kernels::attention_float(c.q.data(), c.k.data(), c.v.data(), (const float*)nullptr, fast.data(), c.g);
  sdflow_kernels::attention(c.q.data(), c.k.data(), c.v.data(), (const float*)nullptr, (const float*)nullptr,
                            (const float*)nullptr, (const int64_t*)nullptr, y.data(), (float*)nullptr,
                            (float*)nullptr, (float*)nullptr, c.g);
  CHECK(std::isnan(fast[c.g.at(0, 1, row, 0, c.g.q_heads, c.g.q_len, 8)]));
  CHECK(std::isnan(y[c.g.at(0, 1, row, 0, c.g.q_heads, c.g.q_len, 8)]));
}

int main() {
  nan_case();
  run(make(2, 4, 4, 5, 7, 0, 8, 6, false));   // plain, v head size != head size
  run(make(1, 6, 2, 9, 9, 0, 16, 16, true));  // grouped KV heads, 3-D layout, past the 4-row blocks
  {  // additive mask [q, k] broadcast over batch and heads, covering fewer keys than there are
    Case c = make(2, 2, 2, 4, 6, 0, 8, 8, false);
    c.use_mask = true, c.mask = random_vector(4 * 5), c.g.mask_strides[2] = 5, c.g.mask_strides[3] = 1, c.g.mask_keys = 5;
    run(c);
  }
  {  // bool mask [batch, 1, 1, k] with a row of no keys (zeros out)
    Case c = make(2, 3, 3, 3, 4, 0, 4, 4, false);
    c.use_mask = c.boolean = true;
    c.bool_mask = {true, false, true, true, false, false, false, false};
    c.g.mask_strides[0] = 4, c.g.mask_strides[3] = 1, c.g.mask_keys = 4;
    run(c);
  }
  {  // causal with a past cache, and the presents
    Case c = make(2, 4, 2, 3, 3, 4, 8, 8, false);
    c.g.causal = true;
    run(c);
  }
  {  // sliding window both ways, softcap, QK outputs in every mode
    for (int mode = 0; mode < 4; ++mode) {
      Case c = make(1, 2, 2, 6, 6, 0, 8, 8, false);
      c.g.left_window = 2, c.g.right_window = 1, c.g.softcap = 2.5, c.g.qk_mode = mode;
      run(c);
    }
  }
  {  // valid KV lengths (decoding into a padded cache), causal from there
    Case c = make(2, 2, 2, 1, 6, 0, 8, 8, false);
    c.nonpad = {4, 6};
    c.g.causal = true;
    run(c);
  }
  for (bool four_d : {true, false})
    for (bool interleaved : {false, true}) {
      rotary_case(four_d, interleaved, 8, true);
      rotary_case(four_d, interleaved, 4, false);
    }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
