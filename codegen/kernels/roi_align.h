// ONNX RoiAlign (opset 10 and 16): for every region of interest, an out_h x out_w grid of bins over one image's
// feature map; each bin averages (or takes the largest of) bilinear samples on a sampling grid inside it. Sample
// positions, weights and the max mode's per-corner maximum follow ONNX's reference and ONNX Runtime's CPU kernel.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace sdflow_kernels {

struct RoiAlignGeometry {
    int64_t num_rois, channels, height, width, out_h, out_w;
    int64_t sampling_ratio;  // samples per bin side; 0: ceil(region size / bins)
    float spatial_scale;
    bool half_pixel;  // coordinate_transformation_mode half_pixel (shift by -0.5) or output_half_pixel
    bool max_mode;
};

struct BilinearSample {
    int64_t pos[4];
    float weight[4];
};

// The bilinear sample at (y, x) of a height x width plane, as ONNX defines it (zero outside [-1, size]).
inline BilinearSample bilinear_sample(float y, float x, int64_t height, int64_t width) {
    BilinearSample s{{0, 0, 0, 0}, {0, 0, 0, 0}};
    if (y < -1.0f || y > float(height) || x < -1.0f || x > float(width)) return s;
    y = std::max(y, 0.0f);
    x = std::max(x, 0.0f);
    int64_t y_low = int64_t(y), x_low = int64_t(x), y_high, x_high;
    if (y_low >= height - 1) {
        y_high = y_low = height - 1;
        y = float(y_low);
    } else {
        y_high = y_low + 1;
    }
    if (x_low >= width - 1) {
        x_high = x_low = width - 1;
        x = float(x_low);
    } else {
        x_high = x_low + 1;
    }
    const float ly = y - float(y_low), lx = x - float(x_low), hy = 1.0f - ly, hx = 1.0f - lx;
    s.pos[0] = y_low * width + x_low, s.pos[1] = y_low * width + x_high;
    s.pos[2] = y_high * width + x_low, s.pos[3] = y_high * width + x_high;
    s.weight[0] = hy * hx, s.weight[1] = hy * lx, s.weight[2] = ly * hx, s.weight[3] = ly * lx;
    return s;
}

// x [N, C, H, W], rois [num_rois, 4] as (x1, y1, x2, y2), batch_indices [num_rois] (each in 0..N-1),
// y [num_rois, C, out_h, out_w].
template <class T>
void roi_align(const T* x, const T* rois, const int64_t* batch_indices, const RoiAlignGeometry& g, T* y) {
    const int64_t plane = g.height * g.width, bins = g.out_h * g.out_w;
#pragma omp parallel for schedule(dynamic)
    for (int64_t r = 0; r < g.num_rois; ++r) {
        const float offset = g.half_pixel ? 0.5f : 0.0f;
        const float start_w = float(rois[r * 4 + 0]) * g.spatial_scale - offset;
        const float start_h = float(rois[r * 4 + 1]) * g.spatial_scale - offset;
        const float end_w = float(rois[r * 4 + 2]) * g.spatial_scale - offset;
        const float end_h = float(rois[r * 4 + 3]) * g.spatial_scale - offset;
        float roi_w = end_w - start_w, roi_h = end_h - start_h;
        if (!g.half_pixel) {
            roi_w = std::max(roi_w, 1.0f);
            roi_h = std::max(roi_h, 1.0f);
        }
        const float bin_h = roi_h / float(g.out_h), bin_w = roi_w / float(g.out_w);
        const int64_t grid_h = g.sampling_ratio > 0 ? g.sampling_ratio : int64_t(std::ceil(roi_h / float(g.out_h)));
        const int64_t grid_w = g.sampling_ratio > 0 ? g.sampling_ratio : int64_t(std::ceil(roi_w / float(g.out_w)));
        const float count = float(std::max<int64_t>(grid_h * grid_w, 1));
        // The samples of every bin, shared by the channels.
        std::vector<BilinearSample> samples;
        samples.reserve(bins * std::max<int64_t>(grid_h * grid_w, 0));
        for (int64_t ph = 0; ph < g.out_h; ++ph)
            for (int64_t pw = 0; pw < g.out_w; ++pw)
                for (int64_t iy = 0; iy < grid_h; ++iy) {
                    const float yy = start_h + float(ph) * bin_h + (float(iy) + 0.5f) * bin_h / float(grid_h);
                    for (int64_t ix = 0; ix < grid_w; ++ix) {
                        const float xx = start_w + float(pw) * bin_w + (float(ix) + 0.5f) * bin_w / float(grid_w);
                        samples.push_back(bilinear_sample(yy, xx, g.height, g.width));
                    }
                }
        const int64_t per_bin = grid_h * grid_w;
        for (int64_t c = 0; c < g.channels; ++c) {
            const T* data = x + (batch_indices[r] * g.channels + c) * plane;
            T* out = y + (r * g.channels + c) * bins;
            for (int64_t b = 0; b < bins; ++b) {
                const BilinearSample* s = samples.data() + b * per_bin;
                float value = 0.0f;
                if (!g.max_mode) {
                    for (int64_t k = 0; k < per_bin; ++k)
                        value += s[k].weight[0] * float(data[s[k].pos[0]]) + s[k].weight[1] * float(data[s[k].pos[1]])
                               + s[k].weight[2] * float(data[s[k].pos[2]]) + s[k].weight[3] * float(data[s[k].pos[3]]);
                    value /= count;
                } else {
                    for (int64_t k = 0; k < per_bin; ++k) {
                        float v = s[k].weight[0] * float(data[s[k].pos[0]]);
                        for (int corner = 1; corner < 4; ++corner)
                            v = std::max(v, s[k].weight[corner] * float(data[s[k].pos[corner]]));
                        value = k == 0 ? v : std::max(value, v);
                    }
                }
                out[b] = T(value);
            }
        }
    }
}

// Batch indices of any integer type, clamped into [0, batch) first (lowering's entry point: a graph input's
// indices are refused before the call, runtime._index_bounds; computed ones are kept inside the batch).
template <class T, class I>
void roi_align_clamped(const T* x, const T* rois, const I* batch_indices, int64_t batch, const RoiAlignGeometry& g,
                       T* y) {
  std::vector<int64_t> clamped(g.num_rois);
  for (int64_t r = 0; r < g.num_rois; ++r) {
    const int64_t b = (int64_t)batch_indices[r];
    clamped[r] = b < 0 ? 0 : (b >= batch ? batch - 1 : b);
  }
  roi_align(x, rois, clamped.data(), g, y);
}

}  // namespace sdflow_kernels
