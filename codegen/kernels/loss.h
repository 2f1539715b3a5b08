// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss as one sequential loop (loss heads are small next to the
// networks that feed them), accumulating in double. Scores [N][C][D] (D: the product of the trailing dims), target
// [N][D], weight [C] (or null); the log-probability of class c is x - shift (0 for NLL, whose input already is one;
// max + log-sum-exp over the classes for softmax cross-entropy, whose log-probabilities are also written when
// log_prob is given).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sdflow_kernels {

enum class LossReduction { none, sum, mean };

template <class T, class I>
void loss(const T* x, const I* target, const T* weight, T* y, T* log_prob, int64_t n, int64_t c, int64_t d,
          bool softmax, bool has_ignore, int64_t ignore_index, LossReduction reduction) {
  double total = 0, weights = 0;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t p = 0; p < d; ++p) {
      double shift = 0;
      if (softmax) {
        double top = -INFINITY, sum = 0;
        for (int64_t k = 0; k < c; ++k) top = std::max(top, (double)x[(b * c + k) * d + p]);
        for (int64_t k = 0; k < c; ++k) sum += std::exp((double)x[(b * c + k) * d + p] - top);
        shift = top + std::log(sum);
        if (log_prob)
          for (int64_t k = 0; k < c; ++k) log_prob[(b * c + k) * d + p] = (T)(x[(b * c + k) * d + p] - shift);
      }
      const int64_t t = (int64_t)target[b * d + p];
      double w = 0, l = 0;
      if (!has_ignore || t != ignore_index) {
        w = weight ? (double)weight[t] : 1.0;
        l = -((double)x[(b * c + t) * d + p] - shift) * w;
      }
      if (reduction == LossReduction::none) y[b * d + p] = (T)l;
      total += l, weights += w;
    }
  if (reduction == LossReduction::sum) y[0] = (T)total;
  if (reduction == LossReduction::mean) y[0] = (T)(total / weights);
}

}  // namespace sdflow_kernels
