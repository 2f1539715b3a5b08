// Unit test of codegen/kernels/roi_align.h against a direct reference: every bin's samples computed one by one in
// double from ONNX's definition (no shared sample table), in both modes, both coordinate conventions, with a fixed
// and an adaptive sampling grid, rois partly outside the image. Prints "ok".
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "roi_align.h"

using namespace sdflow_kernels;

// The value ONNX's bilinear sample contributes, per corner (for the max mode), at (y, x).
static void corners(const std::vector<float>& plane, int64_t h, int64_t w, double y, double x, double out[4]) {
    for (int k = 0; k < 4; ++k) out[k] = 0;
    if (y < -1.0 || y > double(h) || x < -1.0 || x > double(w)) return;
    y = std::max(y, 0.0);
    x = std::max(x, 0.0);
    int64_t y0 = int64_t(y), x0 = int64_t(x);
    int64_t y1 = y0 + 1, x1 = x0 + 1;
    if (y0 >= h - 1) { y0 = y1 = h - 1; y = double(y0); }
    if (x0 >= w - 1) { x0 = x1 = w - 1; x = double(x0); }
    const double ly = y - y0, lx = x - x0;
    out[0] = (1 - ly) * (1 - lx) * plane[y0 * w + x0];
    out[1] = (1 - ly) * lx * plane[y0 * w + x1];
    out[2] = ly * (1 - lx) * plane[y1 * w + x0];
    out[3] = ly * lx * plane[y1 * w + x1];
}

int main() {
    std::mt19937 random(3);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    int failures = 0;
    const int64_t n = 2, c = 3, h = 9, w = 7;
    std::vector<float> x(n * c * h * w);
    for (float& v : x) v = uniform(random);
    const std::vector<float> rois = {0.5f, 1.0f, 5.5f, 7.0f, -2.0f, -1.0f, 3.0f, 2.5f, 4.0f, 4.0f, 4.2f, 4.1f,
                                     1.0f, 2.0f, 13.0f, 17.0f};
    const std::vector<int64_t> batch = {0, 1, 1, 0};
    for (int max_mode = 0; max_mode < 2; ++max_mode)
        for (int half_pixel = 0; half_pixel < 2; ++half_pixel)
            for (int64_t ratio : {int64_t(0), int64_t(2)}) {
                const RoiAlignGeometry g{4, c, h, w, 3, 2, ratio, 0.5f, bool(half_pixel), bool(max_mode)};
                std::vector<float> y(4 * c * 3 * 2);
                roi_align(x.data(), rois.data(), batch.data(), g, y.data());
                for (int64_t r = 0; r < 4; ++r) {
                    const double off = half_pixel ? 0.5 : 0.0;
                    const double sw = rois[r * 4] * 0.5 - off, sh = rois[r * 4 + 1] * 0.5 - off;
                    double rw = rois[r * 4 + 2] * 0.5 - off - sw, rh = rois[r * 4 + 3] * 0.5 - off - sh;
                    if (!half_pixel) { rw = std::max(rw, 1.0); rh = std::max(rh, 1.0); }
                    const int64_t gh = ratio ? ratio : int64_t(std::ceil(rh / 3)), gw = ratio ? ratio : int64_t(std::ceil(rw / 2));
                    for (int64_t ch = 0; ch < c; ++ch) {
                        const std::vector<float> plane(x.begin() + (batch[r] * c + ch) * h * w,
                                                       x.begin() + (batch[r] * c + ch + 1) * h * w);
                        for (int64_t ph = 0; ph < 3; ++ph)
                            for (int64_t pw = 0; pw < 2; ++pw) {
                                double total = 0, best = 0;
                                bool first = true;
                                for (int64_t iy = 0; iy < gh; ++iy)
                                    for (int64_t ix = 0; ix < gw; ++ix) {
                                        double v[4];
                                        corners(plane, h, w, sh + ph * rh / 3 + (iy + 0.5) * rh / 3 / gh,
                                                sw + pw * rw / 2 + (ix + 0.5) * rw / 2 / gw, v);
                                        total += v[0] + v[1] + v[2] + v[3];
                                        const double m = std::max(std::max(v[0], v[1]), std::max(v[2], v[3]));
                                        best = first ? m : std::max(best, m);
                                        first = false;
                                    }
                                const double want = max_mode ? best : total / double(std::max<int64_t>(gh * gw, 1));
                                const double got = y[((r * c + ch) * 3 + ph) * 2 + pw];
                                if (std::fabs(got - want) > 1e-5) {
                                    std::printf("roi %ld channel %ld bin (%ld, %ld) mode %d half %d ratio %ld: %g vs %g\n",
                                                long(r), long(ch), long(ph), long(pw), max_mode, half_pixel, long(ratio), got, want);
                                    ++failures;
                                }
                            }
                    }
                }
            }
    {  // roi_align_clamped: int32 indices outside the batch clamp to its ends (-3 -> 0, 7 -> 1)
        const RoiAlignGeometry g{4, c, h, w, 3, 2, 2, 0.5f, true, false};
        const std::vector<int32_t> wild = {-3, 1, 7, 0};
        const std::vector<int64_t> clamped = {0, 1, 1, 0};
        std::vector<float> a(4 * c * 6), b(4 * c * 6);
        roi_align_clamped(x.data(), rois.data(), wild.data(), n, g, a.data());
        roi_align(x.data(), rois.data(), clamped.data(), g, b.data());
        if (a != b) {
            std::printf("roi_align_clamped differs from roi_align on the clamped indices\n");
            ++failures;
        }
    }
    if (failures) return EXIT_FAILURE;
    std::printf("ok\n");
    return 0;
}
