"""LSTM, GRU and RNN as one C++ tasklet each: the time loop runs in native code, one (direction, batch row) pair
per OpenMP task, gates in double; steps past a row's sequence length leave Y at 0 and the state as it was."""
from __future__ import annotations

from sdflow.ir.ops.recurrent import DEFAULT_ACTIVATIONS, GATES, activation_list
from ._expansion import Ctx, cexpr, expansion

_ACTIVATION_CODE = {
    "Sigmoid": "1.0 / (1.0 + std::exp(-v))", "Tanh": "std::tanh(v)", "Relu": "(v < 0 ? 0.0 : v)",
    "Affine": "{a} * v + {b}", "LeakyRelu": "(v >= 0 ? v : {a} * v)", "ThresholdedRelu": "(v > {a} ? v : 0.0)",
    "ScaledTanh": "{a} * std::tanh({b} * v)", "HardSigmoid": "std::min(1.0, std::max(0.0, {a} * v + {b}))",
    "Elu": "(v >= 0 ? v : {a} * (std::exp(v) - 1.0))", "Softsign": "v / (1.0 + std::abs(v))",
    "Softplus": "std::log1p(std::exp(v))",
}

# One time step of (direction d_, batch row n_): x_ points at X[t], h_/c_ hold the state, g_ the G*H gate sums.
_STEP = {
    "LSTM": """
for (int64_t q_ = 0; q_ < 4 * H_; ++q_) g_[q_] = bias_(q_) + dot_(w_ + q_ * I_, x_, I_) + dot_(r_ + q_ * H_, h_, H_);
for (int64_t j_ = 0; j_ < H_; ++j_) {
  const double i_ = F0(clip_(g_[j_] + peep_(j_) * c_[j_]));
  const double f_ = INPUT_FORGET ? 1.0 - i_ : F0(clip_(g_[2 * H_ + j_] + peep_(2 * H_ + j_) * c_[j_]));
  c_[j_] = f_ * c_[j_] + i_ * F1(clip_(g_[3 * H_ + j_]));
  const double o_ = F0(clip_(g_[H_ + j_] + peep_(H_ + j_) * c_[j_]));
  h_[j_] = o_ * F2(c_[j_]);
}""",
    "GRU": """
for (int64_t q_ = 0; q_ < 3 * H_; ++q_) g_[q_] = wbias_(q_) + dot_(w_ + q_ * I_, x_, I_);
for (int64_t q_ = 0; q_ < 2 * H_; ++q_) g_[q_] = F0(clip_(g_[q_] + rbias_(q_) + dot_(r_ + q_ * H_, h_, H_)));
for (int64_t j_ = 0; j_ < H_; ++j_) reset_[j_] = g_[H_ + j_] * h_[j_];
for (int64_t j_ = 0; j_ < H_; ++j_) {
  const double* rh_ = r_ + (2 * H_ + j_) * H_;
  const double candidate_ = LINEAR_BEFORE_RESET
      ? g_[2 * H_ + j_] + g_[H_ + j_] * (dot_(rh_, h_, H_) + rbias_(2 * H_ + j_))
      : g_[2 * H_ + j_] + dot_(rh_, reset_, H_) + rbias_(2 * H_ + j_);
  next_[j_] = (1.0 - g_[j_]) * F1(clip_(candidate_)) + g_[j_] * h_[j_];
}
for (int64_t j_ = 0; j_ < H_; ++j_) h_[j_] = next_[j_];""",
    "RNN": """
for (int64_t j_ = 0; j_ < H_; ++j_) g_[j_] = F0(clip_(bias_(j_) + dot_(w_ + j_ * I_, x_, I_) + dot_(r_ + j_ * H_, h_, H_)));
for (int64_t j_ = 0; j_ < H_; ++j_) h_[j_] = g_[j_];""",
}


def _activations(node, direction: int) -> str:
    count = len(DEFAULT_ACTIVATIONS[node.op_type])
    lines = []
    for k, (name, alpha, beta) in enumerate(activation_list(node)[direction * count:(direction + 1) * count]):
        body = _ACTIVATION_CODE[name].format(a=repr(float(alpha)), b=repr(float(beta)))
        lines.append(f"auto F{k} = [](double v) {{ return {body}; }};")
    return "\n".join(lines)


@expansion("LSTM", "GRU", "RNN")
def recurrence(ctx: Ctx):
    node = ctx.node
    x_shape, w_shape = ctx.shape(ctx.connector("in", 0)), ctx.shape(ctx.connector("in", 1))
    layout = node.attr("layout", 0)
    steps, batch = (x_shape[0], x_shape[1]) if layout == 0 else (x_shape[1], x_shape[0])
    hidden, gates = ctx.shape(ctx.connector("in", 2))[-1], GATES[node.op_type]
    backwards = {"forward": [0], "reverse": [1], "bidirectional": [0, 1]}[node.attr("direction", "forward")]
    ptr = {name: (ctx.ptr(c) if (c := ctx.connector(kind, p)) else None) for name, (kind, p) in {
        "x": ("in", 0), "w": ("in", 1), "r": ("in", 2), "b": ("in", 3), "lens": ("in", 4), "h0": ("in", 5),
        "c0": ("in", 6), "p": ("in", 7), "y": ("out", 0), "yh": ("out", 1), "yc": ("out", 2)}.items()}
    clip = node.attr("clip")
    x_at = "(t_ * N_ + n_) * I_" if layout == 0 else "(n_ * T_ + t_) * I_"
    y_at = "((t_ * D_ + d_) * N_ + n_) * H_" if layout == 0 else "((n_ * T_ + t_) * D_ + d_) * H_"
    state_at = "(d_ * N_ + n_) * H_" if layout == 0 else "(n_ * D_ + d_) * H_"
    step = _STEP[node.op_type]
    if node.op_type == "LSTM":
        step = step.replace("INPUT_FORGET", str(int(node.attr("input_forget", 0) or 0)))
    if node.op_type == "GRU":
        step = step.replace("LINEAR_BEFORE_RESET", str(int(node.attr("linear_before_reset", 0) or 0)))
    bodies = []
    for d, reverse in enumerate(backwards):
        bodies.append(f"if (d_ == {d}) {{\n{_activations(node, d)}\n"
                      f"for (int64_t s_ = 0; s_ < length_; ++s_) {{\n"
                      f"const int64_t t_ = {'length_ - 1 - s_' if reverse else 's_'};\n"
                      f"for (int64_t k_ = 0; k_ < I_; ++k_) x_[k_] = {ptr['x']}[{x_at} + k_];\n{step}\n"
                      + (f"for (int64_t j_ = 0; j_ < H_; ++j_) {ptr['y']}[{y_at} + j_] = h_[j_];\n" if ptr["y"] else "")
                      + "}\n}")
    b, p = ptr["b"], ptr["p"]
    return ctx.tasklet(f"""
const int64_t T_ = {cexpr(steps)}, N_ = {cexpr(batch)}, I_ = {cexpr(x_shape[2])}, H_ = {cexpr(hidden)};
const int64_t D_ = {len(backwards)}, G_ = {gates};
{f"for (int64_t e_ = 0; e_ < T_ * D_ * N_ * H_; ++e_) {ptr['y']}[e_] = 0;" if ptr["y"] else ""}
#pragma omp parallel for schedule(dynamic)
for (int64_t task_ = 0; task_ < D_ * N_; ++task_) {{
  const int64_t d_ = task_ / N_, n_ = task_ % N_;
  std::vector<double> buffer_((G_ * H_) * (I_ + H_ + 1) + I_ + 4 * H_);
  double* w_ = buffer_.data();
  double* r_ = w_ + G_ * H_ * I_;
  double* g_ = r_ + G_ * H_ * H_;
  double* x_ = g_ + G_ * H_;
  double* h_ = x_ + I_;
  double* c_ = h_ + H_;
  double* reset_ = c_ + H_;
  double* next_ = reset_ + H_;
  for (int64_t e_ = 0; e_ < G_ * H_ * I_; ++e_) w_[e_] = {ptr['w']}[d_ * G_ * H_ * I_ + e_];
  for (int64_t e_ = 0; e_ < G_ * H_ * H_; ++e_) r_[e_] = {ptr['r']}[d_ * G_ * H_ * H_ + e_];
  auto wbias_ = [&](int64_t q) {{ return {f"(double){b}[d_ * 2 * G_ * H_ + q]" if b else "0.0"}; }};
  auto rbias_ = [&](int64_t q) {{ return {f"(double){b}[d_ * 2 * G_ * H_ + G_ * H_ + q]" if b else "0.0"}; }};
  auto bias_ = [&](int64_t q) {{ return wbias_(q) + rbias_(q); }};
  auto peep_ = [&](int64_t q) {{ return {f"(double){p}[d_ * 3 * H_ + q]" if p else "0.0"}; }};
  auto clip_ = [](double v) {{ return {f"v < -{clip!r} ? -{clip!r} : (v > {clip!r} ? {clip!r} : v)" if clip is not None else "v"}; }};
  auto dot_ = [](const double* a, const double* v, int64_t n) {{
    double s = 0; for (int64_t k = 0; k < n; ++k) s += a[k] * v[k]; return s; }};
  (void)bias_; (void)peep_; (void)wbias_; (void)rbias_; (void)reset_; (void)next_;
  for (int64_t j_ = 0; j_ < H_; ++j_) {{
    h_[j_] = {f"{ptr['h0']}[{state_at} + j_]" if ptr["h0"] else "0"};
    c_[j_] = {f"{ptr['c0']}[{state_at} + j_]" if ptr["c0"] else "0"};
  }}
  const int64_t length_ = {f"std::min<int64_t>(T_, std::max<int64_t>(0, {ptr['lens']}[n_]))" if ptr["lens"] else "T_"};
  {chr(10).join(bodies)}
  for (int64_t j_ = 0; j_ < H_; ++j_) {{
    {f"{ptr['yh']}[{state_at} + j_] = h_[j_];" if ptr["yh"] else ""}
    {f"{ptr['yc']}[{state_at} + j_] = c_[j_];" if ptr["yc"] else ""}
  }}
}}
""", includes="#include <vector>\n#include <cmath>\n#include <algorithm>")
