// ONNX Attention (opset 23) and RotaryEmbedding.
// - attention: the general form (any element type, KV cache, valid-length input, QK output, softcap), one
//   parallel loop over (batch, query head, query row): each row computes its scores against every key (past cache
//   first), the additive bias (mask, causal, window, valid KV length), a softmax that gives a fully masked row zeros
//   and the weighted sum of values, in double, rounded to the element type where ONNX's reference rounds (for
//   float16 that decides the last bits); the first head of each KV group also writes the present cache. Mirrors
//   onnx.reference.ops.op_attention step for step.
// - attention_float: float32 without a cache, a block of query rows of one (batch, head) per task: the block's
//   scores Q K^T and then P V by gemm.h's packed micro-kernels (K and V packed per task), the bias and softmax
//   row by row in between; the scores of one block (rows x keys) are the only scratch.
// - rotary_embedding: x rotated pairwise by cos/sin caches (halves or interleaved pairs), per (batch, seq, head).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "gemm.h"
#include "vmath.h"

namespace sdflow_kernels {

struct AttentionGeometry {
  int64_t batch, q_heads, kv_heads, q_len, kv_len, past_len, head_size, v_head_size;
  bool three_d;               // Q, K, V, Y as [batch, seq, heads * size]; else [batch, heads, seq, size]
  double scale, softcap;      // softcap 0: none
  bool causal;
  int64_t left_window, right_window;  // -1: none
  int qk_mode;                // what the QK output holds: 0/1 the scores, 2 scores + bias, 3 probabilities
  // The mask's strides along (batch, head, query, key), 0 where it broadcasts, and how many keys it covers (keys
  // past them are masked out).
  int64_t mask_strides[4], mask_keys;
  // A probability that is NaN (a softmax row over NaN or +inf scores) counts as 0: PyTorch's export of
  // scaled_dot_product_attention, Where(IsNaN(P), 0, P), fused in (sdflow's attribute nan_probabilities_to_zero).
  bool nan_to_zero = false;

  int64_t total() const { return past_len + kv_len; }
  // Element e of row s of head h of sample b of a Q/K/V/Y tensor with `heads` heads, `length` rows, `size`-wide.
  int64_t at(int64_t b, int64_t h, int64_t s, int64_t e, int64_t heads, int64_t length, int64_t size) const {
    return three_d ? (b * length + s) * (heads * size) + h * size + e : ((b * heads + h) * length + s) * size + e;
  }
};

// The additive bias of score (b, h, i, j): the mask's value (a bool mask: 0 or -inf), -inf where causality, a
// window or the valid length (nonpad) excludes the key. `offset`: the query's position past the keys before it.
template <class Acc, class M, class I>
inline Acc attention_bias(const AttentionGeometry& g, const M* mask, const I* nonpad, int64_t b, int64_t h,
                          int64_t i, int64_t j, int64_t offset) {
  Acc bias = 0;
  if (mask) {
    if (j < g.mask_keys) {
      const M value = mask[b * g.mask_strides[0] + h * g.mask_strides[1] + i * g.mask_strides[2] +
                           j * g.mask_strides[3]];
      if constexpr (std::is_same_v<M, bool>) bias += value ? (Acc)0 : -INFINITY;
      else bias += (Acc)value;
    } else {
      bias = -INFINITY;
    }
  }
  if (g.causal && j > i + offset) bias = -INFINITY;
  if (g.left_window >= 0 && (i + offset) - j > g.left_window) bias = -INFINITY;
  if (g.right_window >= 0 && j - (i + offset) > g.right_window) bias = -INFINITY;
  if (nonpad && j >= (int64_t)nonpad[b]) bias = -INFINITY;
  return bias;
}

// Any element type T (float16 types through their float conversions), mask element M (bool or additive),
// nonpad element I. Null pointers for the inputs and outputs a node does not have.
template <class T, class M, class I>
void attention(const T* q, const T* k, const T* v, const M* mask, const T* past_k, const T* past_v,
               const I* nonpad, T* y, T* present_k, T* present_v, T* qk, const AttentionGeometry& g) {
  const int64_t total = g.total(), group = g.q_heads / g.kv_heads, past = g.past_len;
  const T root = (T)std::sqrt(g.scale);  // Q and K each scaled by sqrt(scale), as the reference does
  // Key or value j of the concatenated past + new sequence.
  auto cached = [&](const T* fresh, const T* old, int64_t size, int64_t b, int64_t gh, int64_t j, int64_t e) -> T {
    if (old && j < past) return old[((b * g.kv_heads + gh) * past + j) * size + e];
    return fresh[g.at(b, gh, j - past, e, g.kv_heads, g.kv_len, size)];
  };
#pragma omp parallel for collapse(3)
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t h = 0; h < g.q_heads; ++h)
      for (int64_t i = 0; i < g.q_len; ++i) {
        const int64_t gh = h / group;
        const int64_t offset = past_k ? past : (nonpad ? (int64_t)nonpad[b] - g.q_len : 0);
        std::vector<double> s(total);
        T* qk_row = qk ? qk + ((b * g.q_heads + h) * g.q_len + i) * total : nullptr;
        double bias_max = -INFINITY;
        for (int64_t j = 0; j < total; ++j) {
          double score = 0;
          for (int64_t e = 0; e < g.head_size; ++e)
            score += (double)(T)(q[g.at(b, h, i, e, g.q_heads, g.q_len, g.head_size)] * root) *
                     (double)(T)(cached(k, past_k, g.head_size, b, gh, j, e) * root);
          score = (double)(T)score;
          if (g.softcap > 0) score = g.softcap * std::tanh(score / g.softcap);
          const double bias = attention_bias<double>(g, mask, nonpad, b, h, i, j, offset);
          if (qk_row && g.qk_mode <= 1) qk_row[j] = (T)score;
          if (qk_row && g.qk_mode == 2) qk_row[j] = (T)(score + bias);
          bias_max = std::max(bias_max, bias);
          s[j] = (double)(T)(score + bias);
        }
        double top = -INFINITY;  // NaN when a score is (ONNX's softmax: the row's probabilities are NaN)
        for (int64_t j = 0; j < total; ++j) top = (s[j] > top || s[j] != s[j]) ? s[j] : top;
        double sum = 0;
        const bool masked = std::isinf(bias_max) && bias_max < 0;  // no key may be attended: probabilities 0
        for (int64_t j = 0; j < total; ++j) {
          s[j] = (masked || std::isinf(top)) ? 0.0 : std::exp(s[j] - top);
          sum += s[j];
        }
        for (int64_t j = 0; j < total; ++j) {
          s[j] = sum > 0 || sum != sum ? (double)(T)(s[j] / sum) : 0.0;
          if (g.nan_to_zero && s[j] != s[j]) s[j] = 0.0;
          if (qk_row && g.qk_mode == 3) qk_row[j] = (T)s[j];
        }
        for (int64_t e = 0; e < g.v_head_size; ++e) {
          double acc = 0;
          for (int64_t j = 0; j < total; ++j) acc += s[j] * (double)cached(v, past_v, g.v_head_size, b, gh, j, e);
          y[g.at(b, h, i, e, g.q_heads, g.q_len, g.v_head_size)] = (T)acc;
        }
        if (i == 0 && h % group == 0) {
          for (int64_t j = 0; j < total; ++j) {
            if (present_k)
              for (int64_t e = 0; e < g.head_size; ++e)
                present_k[((b * g.kv_heads + gh) * total + j) * g.head_size + e] =
                    cached(k, past_k, g.head_size, b, gh, j, e);
            if (present_v)
              for (int64_t e = 0; e < g.v_head_size; ++e)
                present_v[((b * g.kv_heads + gh) * total + j) * g.v_head_size + e] =
                    cached(v, past_v, g.v_head_size, b, gh, j, e);
          }
        }
      }
}

// float32, no cache, no valid-length input, no QK output, no softcap (g.past_len 0).
// The additive bias of every key of query row i, added to its scores `sr` (keys of them). The common case, an
// additive float mask that covers the keys and nothing else, is one vector loop; the rest goes through
// attention_bias key by key.
template <class M>
inline void add_attention_bias(const AttentionGeometry& g, const M* mask, int64_t b, int64_t h, int64_t i,
                               float* sr, int64_t keys) {
  const bool plain = !g.causal && g.left_window < 0 && g.right_window < 0;
  if constexpr (!std::is_same_v<M, bool>) {
    if (plain && mask && g.mask_strides[3] == 1 && g.mask_keys >= keys) {
      const M* row = mask + b * g.mask_strides[0] + h * g.mask_strides[1] + i * g.mask_strides[2];
#pragma omp simd
      for (int64_t j = 0; j < keys; ++j) sr[j] += (float)row[j];
      return;
    }
  }
  if (plain && !mask) return;
  const int* no_lengths = nullptr;
  for (int64_t j = 0; j < keys; ++j) sr[j] += attention_bias<float>(g, mask, no_lengths, b, h, i, j, 0);
}

// One task is a block of query rows of one (batch, head): S = scale Q K^T for the block by gemm.h's packed
// micro-kernels (K packed per task into the thread's buffer), the bias and a softmax per row in S, then
// Y = P V by the same kernels, written in place into Y's rows. The block's scores are the only scratch
// (rows x keys floats, per thread).
template <class M>
void attention_float(const float* q, const float* k, const float* v, const M* mask, float* y,
                     const AttentionGeometry& g) {
  const int64_t keys = g.kv_len, d = g.head_size, dv = g.v_head_size, group = g.q_heads / g.kv_heads;
  if (g.batch <= 0 || g.q_heads <= 0 || g.q_len <= 0) return;
  const int64_t ld = (keys + 15) / 16 * 16;  // a score row, padded to whole vectors
  // Rows of Q, K, V, Y are these many floats apart (heads side by side in the 3-D layout).
  const int64_t ldq = g.three_d ? g.q_heads * d : d, ldk = g.three_d ? g.kv_heads * d : d,
                ldv = g.three_d ? g.kv_heads * dv : dv, ldy = g.three_d ? g.q_heads * dv : dv;
  const int threads = gemm::threads_available();
  // Enough tasks for the threads to share (a few per thread), none under 16 rows.
  const int64_t heads = g.batch * g.q_heads;
  int64_t blocks = std::max<int64_t>(1, (4 * threads + heads - 1) / heads);
  blocks = std::min<int64_t>(blocks, std::max<int64_t>(1, g.q_len / 16));
  const int64_t block_rows = (g.q_len + blocks - 1) / blocks;
  blocks = (g.q_len + block_rows - 1) / block_rows;
#pragma omp parallel for schedule(dynamic, 1) if (threads > 1 && heads * blocks > 1)
  for (int64_t task = 0; task < heads * blocks; ++task) {
    const int64_t bh = task / blocks, b = bh / g.q_heads, h = bh % g.q_heads, gh = h / group;
    const int64_t i0 = (task % blocks) * block_rows, rows = std::min(block_rows, g.q_len - i0);
    static thread_local std::vector<float> scores;
    if ((int64_t)scores.size() < block_rows * ld) scores.resize(block_rows * ld);
    float* s = scores.data();
    const float* qh = q + g.at(b, h, i0, 0, g.q_heads, g.q_len, d);
    const float* kh = k + g.at(b, gh, 0, 0, g.kv_heads, keys, d);
    const float* vh = v + g.at(b, gh, 0, 0, g.kv_heads, keys, dv);
    float* yh = y + g.at(b, h, i0, 0, g.q_heads, g.q_len, dv);
    gemm::gemm_serial(rows, keys, d, qh, ldq, kh, ldk, true, s, ld, gemm::Epilogue{(float)g.scale, false, nullptr});
    for (int64_t r = 0; r < rows; ++r) {
      float* sr = s + r * ld;
      add_attention_bias(g, mask, b, h, i0 + r, sr, keys);
      float top = -INFINITY;
      int nan = 0;
#pragma omp simd reduction(max : top) reduction(| : nan)
      for (int64_t j = 0; j < keys; ++j) {
        top = sr[j] > top ? sr[j] : top;
        nan |= sr[j] != sr[j];
      }
      if (nan) top = NAN;                    // a NaN score makes the row NaN, as in ONNX
      if (std::isinf(top) && top < 0) {      // no key may be attended: the probabilities are 0
        for (int64_t j = 0; j < keys; ++j) sr[j] = 0.0f;
        continue;
      }
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < keys; ++j) {
        const float p = exp_f(sr[j] - top);
        sr[j] = p;
        sum += p;
      }
      const float inv = 1.0f / sum;
#pragma omp simd
      for (int64_t j = 0; j < keys; ++j) sr[j] *= inv;
      if (g.nan_to_zero)
#pragma omp simd
        for (int64_t j = 0; j < keys; ++j) sr[j] = sr[j] != sr[j] ? 0.0f : sr[j];
    }
    gemm::gemm_serial(rows, dv, keys, s, ld, vh, ldv, false, yh, ldy, gemm::Epilogue{1.0f, false, nullptr});
  }
}

struct RotaryGeometry {
  int64_t batch, heads, seq, head_size, rotary_dim;  // the first rotary_dim of each head rotate
  bool four_d;       // x [batch, heads, seq, head_size]; else [batch, seq, heads * head_size]
  bool interleaved;  // pairs (2i, 2i + 1); else (i, i + rotary_dim / 2)
};

// y = x rotated: (x1, x2) -> (c x1 - s x2, s x1 + c x2) with c, s from row p of the caches ([positions, R / 2]),
// p = positions[b][s] (or b * seq + s without position ids); rounded to T after each product, as the reference.
template <class T, class P>
void rotary_embedding(const T* x, const T* cos_cache, const T* sin_cache, const P* positions, T* y,
                      const RotaryGeometry& g) {
  using Acc = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const int64_t half = g.rotary_dim / 2;
#pragma omp parallel for collapse(3)
  for (int64_t b = 0; b < g.batch; ++b)
    for (int64_t s = 0; s < g.seq; ++s)
      for (int64_t h = 0; h < g.heads; ++h) {
        const int64_t offset = g.four_d ? ((b * g.heads + h) * g.seq + s) * g.head_size
                                        : ((b * g.seq + s) * g.heads + h) * g.head_size;
        const T* in = x + offset;
        T* out = y + offset;
        const int64_t row = (positions ? (int64_t)positions[b * g.seq + s] : b * g.seq + s) * half;
        for (int64_t i = 0; i < half; ++i) {
          const int64_t first = g.interleaved ? 2 * i : i, second = g.interleaved ? 2 * i + 1 : i + half;
          const Acc c = cos_cache[row + i], n = sin_cache[row + i];
          const Acc x1 = in[first], x2 = in[second];
          out[first] = (T)((T)(c * x1) - (T)(n * x2));
          out[second] = (T)((T)(n * x1) + (T)(c * x2));
        }
        for (int64_t e = g.rotary_dim; e < g.head_size; ++e) out[e] = in[e];
      }
}

}  // namespace sdflow_kernels
