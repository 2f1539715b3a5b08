// Unit test of codegen/kernels/loss.h: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss over [N][C][D] with
// class weights, an ignored index, and each reduction, against the definitions in double (softmax's
// log-probabilities written out too).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.h"
#include "loss.h"

using namespace sdflow_kernels;

int main() {
  const int64_t n = 2, c = 3, d = 2;
  const std::vector<float> x = {0.1f, -0.4f, 0.3f, 0.9f, -1.2f, 0.0f, 0.5f, 0.2f, -0.3f, 0.7f, 1.1f, -0.8f};
  const std::vector<int64_t> target = {2, 0, 1, 1};
  const std::vector<float> weight = {0.5f, 2.0f, 1.5f};
  for (bool softmax : {false, true})
    for (auto reduction : {LossReduction::none, LossReduction::sum, LossReduction::mean}) {
      std::vector<float> y(n * d, -7), log_prob(n * c * d);
      loss(x.data(), target.data(), weight.data(), y.data(), log_prob.data(), n, c, d, softmax, true, 0, reduction);
      double total = 0, weights = 0;
      for (int64_t b = 0; b < n; ++b)
        for (int64_t p = 0; p < d; ++p) {
          double shift = 0;
          if (softmax) {
            double sum = 0;
            for (int64_t k = 0; k < c; ++k) sum += std::exp(x[(b * c + k) * d + p]);
            shift = std::log(sum);
            for (int64_t k = 0; k < c; ++k) CHECK(std::fabs(log_prob[(b * c + k) * d + p] - (x[(b * c + k) * d + p] - shift)) < 1e-6);
          }
          const int64_t t = target[b * d + p];
          const double w = t == 0 ? 0.0 : weight[t];  // class 0 is the ignored index
          const double l = t == 0 ? 0.0 : -(x[(b * c + t) * d + p] - shift) * w;
          if (reduction == LossReduction::none) CHECK(std::fabs(y[b * d + p] - l) < 1e-6);
          total += l, weights += w;
        }
      if (reduction == LossReduction::sum) CHECK(std::fabs(y[0] - total) < 1e-6);
      if (reduction == LossReduction::mean) CHECK(std::fabs(y[0] - total / weights) < 1e-6);
    }
  std::printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures ? 1 : 0;
}
