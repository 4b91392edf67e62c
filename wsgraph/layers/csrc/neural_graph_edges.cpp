// Per-edge loops of NeuralGraphGNN's fused backend (wsgraph/layers/neural_graph_fused.py), each one
// pass over a chunk of edges instead of a dozen torch operations that each read and write it.
//
// Tensors (all contiguous, one dtype):
//   scale_shift [B, p, q, 2F]   FiLM's scale (channels 0..F-1) and shift (F..2F-1) of every edge i -> j,
//                                before FiLM's bias [2F] is added (here, as the loops read them)
//   rows [B, p, F], cols [B, q, F]   the endpoint terms, h_ij = rows_i + cols_j
//   statistics [B, R, F]         reduced along `axis`: over i (axis 1, R = q) or over j (axis 2, R = p)
// The messages are m_ij = h_ij * (scale_ij + bias) + (shift_ij + bias'), evaluated by the same expression in the forward
// and backward loops (built with -ffp-contract=off), so the backward pass finds the forward's minima and
// maxima again bit for bit.

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <utility>
#include <vector>

namespace {

struct Shape {
  int64_t networks, p, q, channels;
  int axis;
  int64_t reduced() const { return axis == 1 ? q : p; }
};

// The shape of edges [B, p, q, factor x F] between rows [B, p, F] and cols [B, q, F], checked.
Shape check_inputs(const torch::Tensor& edges, int64_t factor, const torch::Tensor& rows, const torch::Tensor& cols,
                   int64_t axis) {
  TORCH_CHECK(axis == 1 || axis == 2, "axis must be 1 or 2, got ", axis);
  TORCH_CHECK(edges.dim() == 4 && rows.dim() == 3 && cols.dim() == 3, "expected [B, p, q, ", factor,
              "F], [B, p, F], [B, q, F]");
  for (const auto* tensor : {&edges, &rows, &cols}) {
    TORCH_CHECK(tensor->is_contiguous() && tensor->device().is_cpu(), "expected contiguous CPU tensors");
    TORCH_CHECK(tensor->scalar_type() == edges.scalar_type(), "expected one dtype");
  }
  Shape shape{edges.size(0), edges.size(1), edges.size(2), rows.size(2), static_cast<int>(axis)};
  TORCH_CHECK(edges.size(3) == factor * shape.channels, "edges have ", edges.size(3), " channels, expected ",
              factor, " x ", shape.channels);
  TORCH_CHECK(rows.size(0) == shape.networks && rows.size(1) == shape.p, "rows do not match the edges");
  TORCH_CHECK(cols.size(0) == shape.networks && cols.size(1) == shape.q && cols.size(2) == shape.channels,
              "cols do not match the edges");
  return shape;
}

template <typename T>
T* data_or_null(const torch::Tensor& tensor) {
  return tensor.defined() && tensor.numel() ? tensor.data_ptr<T>() : nullptr;
}

// An array of [B, R, F] per network, or one shared row of zeros in place of one not given.
template <typename T>
struct PerNetwork {
  const T* data;
  int64_t stride;
  const T* at(int64_t network) const { return data + network * stride; }
};

template <typename T>
PerNetwork<T> per_network(const T* data, int64_t stride, const std::vector<T>& zeros) {
  return data ? PerNetwork<T>{data, stride} : PerNetwork<T>{zeros.data(), 0};
}

// With F fixed at compile time, the message loops are written with GCC's and Clang's vector types: each walks the
// messages one neuron receives with that neuron's statistics (or gradient) in registers, and stores them once.
// Left to the compilers' own vectorisation, the statistics stayed in memory, loaded and stored under masks and
// branches for every message (docs/baselines.md has the step times before and after).
#if defined(__GNUC__)
#define WSGRAPH_VECTORS 1
#if defined(__FMA__)
#include <immintrin.h>
#endif
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
constexpr int kVectorBytes = 32;
#else
constexpr int kVectorBytes = 16;
#endif

template <typename T>
struct Vectors {
  typedef T type __attribute__((vector_size(kVectorBytes)));
  static constexpr int lanes = kVectorBytes / sizeof(T);
  static type load(const T* from) {
    type vector;
    __builtin_memcpy(&vector, from, sizeof(type));
    return vector;
  }
  static void store(T* to, const type& vector) { __builtin_memcpy(to, &vector, sizeof(type)); }
  static type splat(T value) { return type{} + value; }
};

// Whether F = CHANNELS channels are a whole number of vectors of T.
template <typename T, int CHANNELS>
constexpr bool whole_vectors() {
  return CHANNELS > 0 && CHANNELS % Vectors<T>::lanes == 0;
}

// The walk of the vector loops over the edges [B, p, q, 2F]: neuron r < receivers of the reduced side (a column j
// for axis 1, a row i for axis 2) of network b receives the messages of edges base(b, r) + k step, k < others.
// Its endpoint term (or gradient) is fixed(rows, cols, b, r); the senders' are moving(rows, cols, b) + k F.
struct Walk {
  int64_t receivers, others, step, neuron_step, network_step, p, q, channels;
  bool along_columns;
  Walk(const Shape& s, int64_t width)
      : receivers(s.reduced()),
        others(s.axis == 1 ? s.p : s.q),
        step(s.axis == 1 ? s.q * width : width),
        neuron_step(s.axis == 1 ? width : s.q * width),
        network_step(s.p * s.q * width),
        p(s.p),
        q(s.q),
        channels(s.channels),
        along_columns(s.axis == 1) {}
  template <typename P>
  P fixed(P rows, P cols, int64_t b, int64_t r) const {
    return along_columns ? cols + (b * q + r) * channels : rows + (b * p + r) * channels;
  }
  template <typename P>
  P moving(P rows, P cols, int64_t b) const {
    return along_columns ? rows + b * p * channels : cols + b * q * channels;
  }
};

// The message of one edge, block v of its channels, as the scalar loops write it: h (scale + bias) + (shift + bias').
template <typename T, int F>
struct MessageVectors {
  using V = Vectors<T>;
  using vec = typename V::type;
  static constexpr int blocks = F / V::lanes;
  vec scale_bias[blocks], shift_bias[blocks];
  explicit MessageVectors(const T* bias) {
    for (int v = 0; v < blocks; ++v) {
      scale_bias[v] = V::load(bias + v * V::lanes);
      shift_bias[v] = V::load(bias + F + v * V::lanes);
    }
  }
  // hidden = moving + fixed; the edge's scale at `edge`, its shift F further.
  vec scale(const T* edge, int v) const { return V::load(edge + v * V::lanes) + scale_bias[v]; }
  vec message(const vec& hidden, const vec& scale_v, const T* edge, int v) const {
    return hidden * scale_v + (V::load(edge + F + v * V::lanes) + shift_bias[v]);
  }
};

template <typename T, int F, bool MOMENTS, bool EXTREMES>
void messages_forward_vectors(const Shape& s, const T* scale_shift, const T* bias, const T* rows, const T* cols,
                              T* total, T* squares, T* minimum, T* maximum, T* min_count, T* max_count) {
  using V = Vectors<T>;
  using vec = typename V::type;
  constexpr int L = V::lanes, N = F / L;
  const MessageVectors<T, F> messages(bias);
  const Walk walk(s, 2 * F);
  const vec one = V::splat(T(1)), zero = V::splat(T(0)), infinity = V::splat(std::numeric_limits<T>::infinity());
  for (int64_t b = 0; b < s.networks; ++b) {
    const T* moving = walk.moving(rows, cols, b);
    for (int64_t r = 0; r < walk.receivers; ++r) {
      const T* fixed = walk.fixed(rows, cols, b, r);
      const T* edge = scale_shift + b * walk.network_step + r * walk.neuron_step;
      vec fixed_part[N], sum[N], sum_squares[N], low[N], high[N], low_count[N], high_count[N];
      for (int v = 0; v < N; ++v) {
        fixed_part[v] = V::load(fixed + v * L);
        sum[v] = sum_squares[v] = low_count[v] = high_count[v] = zero;
        low[v] = infinity;
        high[v] = -infinity;
      }
      for (int64_t k = 0; k < walk.others; ++k, edge += walk.step) {
        for (int v = 0; v < N; ++v) {
          const vec hidden = V::load(moving + k * F + v * L) + fixed_part[v];
          const vec message = messages.message(hidden, messages.scale(edge, v), edge, v);
          if constexpr (MOMENTS) {
            sum[v] += message;
            sum_squares[v] += message * message;
          }
          if constexpr (EXTREMES) {
            // As in the scalar loop: a NaN message becomes the extreme and stays it.
            const auto is_nan = message != message;
            const auto below = (message < low[v]) | is_nan;
            const auto above = (message > high[v]) | is_nan;
            low_count[v] = below ? one : low_count[v] + (message == low[v] ? one : zero);
            high_count[v] = above ? one : high_count[v] + (message == high[v] ? one : zero);
            low[v] = below ? message : low[v];
            high[v] = above ? message : high[v];
          }
        }
      }
      const int64_t out = (b * walk.receivers + r) * F;
      for (int v = 0; v < N; ++v) {
        if constexpr (MOMENTS) {
          V::store(total + out + v * L, sum[v]);
          V::store(squares + out + v * L, sum_squares[v]);
        }
        if constexpr (EXTREMES) {
          V::store(minimum + out + v * L, low[v]);
          V::store(maximum + out + v * L, high[v]);
          V::store(min_count + out + v * L, low_count[v]);
          V::store(max_count + out + v * L, high_count[v]);
        }
      }
    }
  }
}

template <typename T, int F>
void messages_backward_vectors(const Shape& s, const T* scale_shift, const T* bias, const T* rows, const T* cols,
                               const PerNetwork<T>& minimum, const PerNetwork<T>& maximum,
                               const PerNetwork<T>& grad_total, const PerNetwork<T>& grad_squares,
                               const PerNetwork<T>& min_share, const PerNetwork<T>& max_share, T* grads,
                               T* grad_rows, T* grad_cols) {
  using V = Vectors<T>;
  using vec = typename V::type;
  constexpr int L = V::lanes, N = F / L;
  const MessageVectors<T, F> messages(bias);
  const Walk walk(s, 2 * F);
  const vec two = V::splat(T(2)), zero = V::splat(T(0));
  for (int64_t b = 0; b < s.networks; ++b) {
    const T* moving = walk.moving(rows, cols, b);
    T* grad_moving = walk.moving(grad_rows, grad_cols, b);
    for (int64_t r = 0; r < walk.receivers; ++r) {
      const T* fixed = walk.fixed(rows, cols, b, r);
      T* grad_fixed = walk.fixed(grad_rows, grad_cols, b, r);
      const int64_t offset = b * walk.network_step + r * walk.neuron_step;
      const T* edge = scale_shift + offset;
      T* edge_grads = grads + offset;
      vec fixed_part[N], low[N], high[N], from_total[N], from_squares[N], from_min[N], from_max[N], fixed_grad[N];
      for (int v = 0; v < N; ++v) {
        const int64_t local = r * F + v * L;
        fixed_part[v] = V::load(fixed + v * L);
        low[v] = V::load(minimum.at(b) + local);
        high[v] = V::load(maximum.at(b) + local);
        from_total[v] = V::load(grad_total.at(b) + local);
        from_squares[v] = V::load(grad_squares.at(b) + local);
        from_min[v] = V::load(min_share.at(b) + local);
        from_max[v] = V::load(max_share.at(b) + local);
        fixed_grad[v] = zero;
      }
      for (int64_t k = 0; k < walk.others; ++k, edge += walk.step, edge_grads += walk.step) {
        for (int v = 0; v < N; ++v) {
          const vec hidden = V::load(moving + k * F + v * L) + fixed_part[v];
          const vec scale = messages.scale(edge, v);
          const vec message = messages.message(hidden, scale, edge, v);
          const vec grad = from_total[v] + two * message * from_squares[v] + (message == low[v] ? from_min[v] : zero) +
                           (message == high[v] ? from_max[v] : zero);
          // The gradients of the scale and of the shift (= of the message) side by side, as in the scalar loop.
          V::store(edge_grads + F + v * L, grad);
          V::store(edge_grads + v * L, grad * hidden);
          const vec grad_hidden = grad * scale;
          fixed_grad[v] += grad_hidden;
          T* moving_grad = grad_moving + k * F + v * L;
          V::store(moving_grad, V::load(moving_grad) + grad_hidden);
        }
      }
      for (int v = 0; v < N; ++v) V::store(grad_fixed + v * L, fixed_grad[v]);
    }
  }
}

// Cosines and sines of float32 angles, for the Fourier encoder: torch's vectorised cos and sin each reduce the angle
// and evaluate a polynomial, and the angles are a pass of their own; here one reduction serves both, in registers,
// from the weight and the frequencies (the outer product of the angles never reaches memory).
struct FloatSinCos {
  using V = Vectors<float>;
  using vec = V::type;
  typedef int32_t ivec __attribute__((vector_size(kVectorBytes)));
  // Up to this |angle| the three-part reduction by pi/4 below stays within about one rounding (tested to 1.5e-7
  // against float64); larger angles, infinities and NaNs take the scalar float64 functions.
  static constexpr float kLargest = 8192.0f;

  static vec multiply_add(const vec& a, const vec& b, const vec& c) {
#if defined(__FMA__) && defined(__AVX512F__)
    return reinterpret_cast<vec>(_mm512_fmadd_ps(reinterpret_cast<__m512>(a), reinterpret_cast<__m512>(b),
                                                 reinterpret_cast<__m512>(c)));
#elif defined(__FMA__) && defined(__AVX__)
    return reinterpret_cast<vec>(_mm256_fmadd_ps(reinterpret_cast<__m256>(a), reinterpret_cast<__m256>(b),
                                                 reinterpret_cast<__m256>(c)));
#elif defined(__FMA__)
    return reinterpret_cast<vec>(
        _mm_fmadd_ps(reinterpret_cast<__m128>(a), reinterpret_cast<__m128>(b), reinterpret_cast<__m128>(c)));
#else
    return a * b + c;
#endif
  }
  // The Cephes single-precision method: |x| = j pi/4 + r with j even and |r| <= pi/4 (pi/4 in three parts, so
  // that j times the first two is exact), minimax polynomials for sin r and cos r, then the quadrant's signs.
  static void both(const vec& x, vec& sine, vec& cosine) {
    const ivec sign = ivec{} + static_cast<int32_t>(0x80000000u);
    const vec magnitude = reinterpret_cast<vec>(reinterpret_cast<ivec>(x) & ~sign);
    ivec j = __builtin_convertvector(magnitude * 1.27323954473516f, ivec);
    j = (j + 1) & ~1;
    const vec y = __builtin_convertvector(j, vec);
    const vec r = ((magnitude - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
    const vec z = r * r;
    const vec sin_r = multiply_add(
        multiply_add(multiply_add(V::splat(-1.9515295891e-4f), z, V::splat(8.3321608736e-3f)), z,
                     V::splat(-1.6666654611e-1f)),
        z * r, r);
    const vec cos_r = multiply_add(
        multiply_add(multiply_add(multiply_add(V::splat(2.443315711809948e-5f), z, V::splat(-1.388731625493765e-3f)),
                                  z, V::splat(4.166664568298827e-2f)),
                     z, V::splat(-0.5f)),
        z, V::splat(1.0f));
    const ivec quadrant = (j >> 1) & 3;
    const ivec odd = (quadrant & 1) != 0;
    const ivec sine_sign = (((quadrant & 2) != 0) & sign) ^ (reinterpret_cast<ivec>(x) & sign);
    const ivec cosine_sign = (((quadrant + 1) & 2) != 0) & sign;
    sine = reinterpret_cast<vec>(reinterpret_cast<ivec>(odd ? cos_r : sin_r) ^ sine_sign);
    cosine = reinterpret_cast<vec>(reinterpret_cast<ivec>(odd ? sin_r : cos_r) ^ cosine_sign);
  }

  // cosines[e, k] and sines[e, k] of the angles raw[e] frequencies[k], e < rows, k < K (a whole number of vectors).
  static void outer(const float* raw, const float* frequencies, int64_t rows, int64_t K, float* cosines,
                    float* sines) {
    // A NaN frequency makes this NaN (std::max would skip it), which sends every row to the scalar path.
    float largest_frequency = 0.0f;
    for (int64_t k = 0; k < K; ++k) {
      if (!(std::fabs(frequencies[k]) <= largest_frequency)) largest_frequency = std::fabs(frequencies[k]);
    }
    for (int64_t e = 0; e < rows; ++e) {
      const float weight = raw[e];
      float* cosine_row = cosines + e * K;
      float* sine_row = sines + e * K;
      // Not `>`: a NaN weight or frequency fails this test and takes the scalar path.
      if (!(std::fabs(weight) * largest_frequency <= kLargest)) {
        for (int64_t k = 0; k < K; ++k) {
          const double angle = weight * frequencies[k];  // the float product, as torch's path rounds it
          cosine_row[k] = static_cast<float>(std::cos(angle));
          sine_row[k] = static_cast<float>(std::sin(angle));
        }
        continue;
      }
      const vec weights = V::splat(weight);
      for (int64_t k = 0; k < K; k += V::lanes) {
        vec sine, cosine;
        both(weights * V::load(frequencies + k), sine, cosine);
        V::store(cosine_row + k, cosine);
        V::store(sine_row + k, sine);
      }
    }
  }
};
#else
#define WSGRAPH_VECTORS 0
template <typename T, int CHANNELS>
constexpr bool whole_vectors() {
  return false;
}
#endif

// CHANNELS > 0 fixes F at compile time (the inner loops unroll into whole vectors); 0 reads it from the shape.
template <typename T, int CHANNELS>
void messages_forward(const Shape& s, const T* __restrict scale_shift, const T* __restrict bias,
                      const T* __restrict rows, const T* __restrict cols, T* __restrict total, T* __restrict squares, T* __restrict minimum,
                      T* __restrict maximum, T* __restrict min_count, T* __restrict max_count) {
  const int64_t F = CHANNELS > 0 ? CHANNELS : s.channels, R = s.reduced();
  const bool moments = total != nullptr, extremes = minimum != nullptr;
#if WSGRAPH_VECTORS
  if constexpr (whole_vectors<T, CHANNELS>()) {
    if (moments && extremes) {
      messages_forward_vectors<T, CHANNELS, true, true>(s, scale_shift, bias, rows, cols, total, squares, minimum,
                                                        maximum, min_count, max_count);
    } else if (moments) {
      messages_forward_vectors<T, CHANNELS, true, false>(s, scale_shift, bias, rows, cols, total, squares, minimum,
                                                         maximum, min_count, max_count);
    } else if (extremes) {
      messages_forward_vectors<T, CHANNELS, false, true>(s, scale_shift, bias, rows, cols, total, squares, minimum,
                                                         maximum, min_count, max_count);
    }
    return;
  }
#endif
  const int64_t size = s.networks * R * F;
  if (moments) {
    std::fill(total, total + size, T(0));
    std::fill(squares, squares + size, T(0));
  }
  if (extremes) {
    std::fill(minimum, minimum + size, std::numeric_limits<T>::infinity());
    std::fill(maximum, maximum + size, -std::numeric_limits<T>::infinity());
    std::fill(min_count, min_count + size, T(0));
    std::fill(max_count, max_count + size, T(0));
  }
  for (int64_t b = 0; b < s.networks; ++b) {
    for (int64_t i = 0; i < s.p; ++i) {
      const T* __restrict row = rows + (b * s.p + i) * F;
      for (int64_t j = 0; j < s.q; ++j) {
        const T* __restrict col = cols + (b * s.q + j) * F;
        const T* __restrict scale = scale_shift + ((b * s.p + i) * s.q + j) * 2 * F;
        const T* __restrict shift = scale + F;
        const int64_t out = (b * R + (s.axis == 1 ? j : i)) * F;
        if (moments) {
          T* __restrict sum = total + out;
          T* __restrict sum_squares = squares + out;
#pragma GCC ivdep
          for (int64_t c = 0; c < F; ++c) {
            const T message = (row[c] + col[c]) * (scale[c] + bias[c]) + (shift[c] + bias[F + c]);
            sum[c] += message;
            sum_squares[c] += message * message;
          }
        }
        if (extremes) {
          // The extremes and how many messages reach them: a tie shares the gradient in the backward pass.
          T* __restrict low = minimum + out;
          T* __restrict high = maximum + out;
          T* __restrict low_count = min_count + out;
          T* __restrict high_count = max_count + out;
#pragma GCC ivdep
          for (int64_t c = 0; c < F; ++c) {
            const T message = (row[c] + col[c]) * (scale[c] + bias[c]) + (shift[c] + bias[F + c]);
            // A NaN message becomes the extreme and stays it, as torch.amin and torch.amax propagate NaN.
            // Bitwise `|`, not `||`: a short-circuit is a branch, and the loop would not vectorise.
            const bool is_nan = message != message;
            const bool below = (message < low[c]) | is_nan;
            const bool above = (message > high[c]) | is_nan;
            low_count[c] = below ? T(1) : low_count[c] + (message == low[c] ? T(1) : T(0));
            high_count[c] = above ? T(1) : high_count[c] + (message == high[c] ? T(1) : T(0));
            low[c] = below ? message : low[c];
            high[c] = above ? message : high[c];
          }
        }
      }
    }
  }
}

// min_share and max_share: each extreme's gradient divided by the number of messages that reach it.
template <typename T, int CHANNELS>
void messages_backward(const Shape& s, const T* __restrict scale_shift, const T* __restrict bias,
                       const T* __restrict rows, const T* __restrict cols, const T* minimum_data, const T* maximum_data,
                       const T* grad_total_data, const T* grad_squares_data, const T* min_share_data,
                       const T* max_share_data, T* __restrict grads, T* __restrict grad_rows,
                       T* __restrict grad_cols) {
  const int64_t F = CHANNELS > 0 ? CHANNELS : s.channels, R = s.reduced();
  std::fill(grad_rows, grad_rows + s.networks * s.p * F, T(0));
  std::fill(grad_cols, grad_cols + s.networks * s.q * F, T(0));
  // Statistics without a gradient take a row of zeros: the loop below has no branches, so it vectorises.
  const std::vector<T> zeros(R * F, T(0));
  const auto minimum = per_network(minimum_data, R * F, zeros), maximum = per_network(maximum_data, R * F, zeros);
  const auto grad_total = per_network(grad_total_data, R * F, zeros);
  const auto grad_squares = per_network(grad_squares_data, R * F, zeros);
  const auto min_share = per_network(min_share_data, R * F, zeros);
  const auto max_share = per_network(max_share_data, R * F, zeros);
#if WSGRAPH_VECTORS
  if constexpr (whole_vectors<T, CHANNELS>()) {
    messages_backward_vectors<T, CHANNELS>(s, scale_shift, bias, rows, cols, minimum, maximum, grad_total,
                                           grad_squares, min_share, max_share, grads, grad_rows, grad_cols);
    return;
  }
#endif
  for (int64_t b = 0; b < s.networks; ++b) {
    for (int64_t i = 0; i < s.p; ++i) {
      const T* __restrict row = rows + (b * s.p + i) * F;
      T* __restrict grad_row = grad_rows + (b * s.p + i) * F;
      for (int64_t j = 0; j < s.q; ++j) {
        const T* __restrict col = cols + (b * s.q + j) * F;
        T* __restrict grad_col = grad_cols + (b * s.q + j) * F;
        const int64_t edge = ((b * s.p + i) * s.q + j) * 2 * F;
        const T* __restrict scale = scale_shift + edge;
        const T* __restrict shift = scale + F;
        // The gradients of the scale and of the shift (= of the message) side by side, as the caller's
        // product with FiLM's [scale; shift] weight reads them.
        T* __restrict grad_scale = grads + edge;
        T* __restrict grad_message = grad_scale + F;
        const int64_t local = (s.axis == 1 ? j : i) * F;
        const T* __restrict low = minimum.at(b) + local;
        const T* __restrict high = maximum.at(b) + local;
        const T* __restrict from_total = grad_total.at(b) + local;
        const T* __restrict from_squares = grad_squares.at(b) + local;
        const T* __restrict from_min = min_share.at(b) + local;
        const T* __restrict from_max = max_share.at(b) + local;
#pragma GCC ivdep
        for (int64_t c = 0; c < F; ++c) {
          const T hidden = row[c] + col[c];
          const T scale_c = scale[c] + bias[c];
          const T message = hidden * scale_c + (shift[c] + bias[F + c]);
          const T grad = from_total[c] + T(2) * message * from_squares[c] +
                         (message == low[c] ? from_min[c] : T(0)) + (message == high[c] ? from_max[c] : T(0));
          grad_message[c] = grad;
          grad_scale[c] = grad * hidden;
          const T grad_hidden = grad * scale_c;
          grad_row[c] += grad_hidden;
          grad_col[c] += grad_hidden;
        }
      }
    }
  }
}

template <typename T, int CHANNELS>
void endpoint_sums(const Shape& s, const T* __restrict grad, T* __restrict grad_rows, T* __restrict grad_cols) {
  const int64_t F = CHANNELS > 0 ? CHANNELS : s.channels;
  std::fill(grad_rows, grad_rows + s.networks * s.p * F, T(0));
  std::fill(grad_cols, grad_cols + s.networks * s.q * F, T(0));
  for (int64_t b = 0; b < s.networks; ++b) {
    for (int64_t i = 0; i < s.p; ++i) {
      T* __restrict grad_row = grad_rows + (b * s.p + i) * F;
      for (int64_t j = 0; j < s.q; ++j) {
        const T* edge = grad + ((b * s.p + i) * s.q + j) * F;
        T* __restrict grad_col = grad_cols + (b * s.q + j) * F;
#pragma GCC ivdep
        for (int64_t c = 0; c < F; ++c) {
          grad_row[c] += edge[c];
          grad_col[c] += edge[c];
        }
      }
    }
  }
}

template <typename T, int CHANNELS>
void add_endpoints(const Shape& s, T* __restrict edges, const T* __restrict rows, const T* __restrict cols) {
  const int64_t F = CHANNELS > 0 ? CHANNELS : s.channels;
  for (int64_t b = 0; b < s.networks; ++b) {
    for (int64_t i = 0; i < s.p; ++i) {
      const T* row = rows + (b * s.p + i) * F;
      for (int64_t j = 0; j < s.q; ++j) {
        const T* col = cols + (b * s.q + j) * F;
        T* __restrict edge = edges + ((b * s.p + i) * s.q + j) * F;
#pragma GCC ivdep
        for (int64_t c = 0; c < F; ++c) edge[c] += row[c] + col[c];
      }
    }
  }
}

void check_statistics(std::initializer_list<const torch::Tensor*> statistics, const Shape& shape,
                      const torch::Tensor& like, const char* what) {
  for (const auto* statistic : statistics) {
    TORCH_CHECK(statistic->numel() == 0 ||
                    (statistic->is_contiguous() && statistic->device().is_cpu() &&
                     statistic->scalar_type() == like.scalar_type() &&
                     statistic->numel() == shape.networks * shape.reduced() * shape.channels),
                what, " must be empty or contiguous CPU [B, R, F] of the inputs' dtype");
  }
}

// An output the loops write: contiguous, on the CPU, of `like`'s shape and dtype.
void check_like(const torch::Tensor& out, const torch::Tensor& like, const char* message) {
  TORCH_CHECK(out.is_contiguous() && out.device().is_cpu() && out.sizes() == like.sizes() &&
                  out.scalar_type() == like.scalar_type(),
              message);
}

void check_bias(const torch::Tensor& bias, const torch::Tensor& scale_shift) {
  TORCH_CHECK(bias.dim() == 1 && bias.is_contiguous() && bias.device().is_cpu() &&
                  bias.scalar_type() == scale_shift.scalar_type() &&
                  bias.size(0) == scale_shift.size(3),
              "bias must be a contiguous CPU [2F] vector of scale_shift's dtype");
}

// Runs body<scalar_t, CHANNELS>() with F = 32 (the Neural Graphs width) fixed at compile time, else read at run time.
#define WSGRAPH_DISPATCH(TENSOR, CHANNELS_VALUE, NAME, ...)                               \
  AT_DISPATCH_FLOATING_TYPES(TENSOR.scalar_type(), NAME, [&] {                            \
    if ((CHANNELS_VALUE) == 32) {                                                         \
      constexpr int CHANNELS = 32;                                                        \
      __VA_ARGS__();                                                                      \
    } else {                                                                              \
      constexpr int CHANNELS = 0;                                                         \
      __VA_ARGS__();                                                                      \
    }                                                                                     \
  })

// total, squares, minimum, maximum and the extremes' tie counts: [B, R, F] outputs, or empty tensors for
// statistics not asked for (the moments together, the extremes and their counts together).
void messages_forward_op(const torch::Tensor& scale_shift, const torch::Tensor& bias, const torch::Tensor& rows,
                         const torch::Tensor& cols, int64_t axis, const torch::Tensor& total, const torch::Tensor& squares,
                         const torch::Tensor& minimum, const torch::Tensor& maximum, const torch::Tensor& min_count,
                         const torch::Tensor& max_count) {
  const Shape shape = check_inputs(scale_shift, 2, rows, cols, axis);
  check_bias(bias, scale_shift);
  check_statistics({&total, &squares, &minimum, &maximum, &min_count, &max_count}, shape, scale_shift, "statistics");
  TORCH_CHECK((total.numel() == 0) == (squares.numel() == 0), "the sum and the sum of squares come together");
  TORCH_CHECK(minimum.numel() == maximum.numel() && minimum.numel() == min_count.numel() &&
                  minimum.numel() == max_count.numel(),
              "the extremes and their counts come together");
  WSGRAPH_DISPATCH(scale_shift, shape.channels, "messages_forward", [&] {
    messages_forward<scalar_t, CHANNELS>(
        shape, scale_shift.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), rows.data_ptr<scalar_t>(),
        cols.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(total), data_or_null<scalar_t>(squares), data_or_null<scalar_t>(minimum),
        data_or_null<scalar_t>(maximum), data_or_null<scalar_t>(min_count), data_or_null<scalar_t>(max_count));
  });
}

// grads [B, p, q, 2F], grad_rows [B, p, F] and grad_cols [B, q, F] are written. The gradients of the sum and the
// sum of squares, and the extremes' shares of theirs, are empty tensors where none flowed back.
void messages_backward_op(const torch::Tensor& scale_shift, const torch::Tensor& bias, const torch::Tensor& rows,
                          const torch::Tensor& cols, int64_t axis, const torch::Tensor& minimum, const torch::Tensor& maximum,
                          const torch::Tensor& grad_total, const torch::Tensor& grad_squares,
                          const torch::Tensor& min_share, const torch::Tensor& max_share, const torch::Tensor& grads,
                          const torch::Tensor& grad_rows, const torch::Tensor& grad_cols) {
  const Shape shape = check_inputs(scale_shift, 2, rows, cols, axis);
  check_bias(bias, scale_shift);
  check_statistics({&minimum, &maximum, &grad_total, &grad_squares, &min_share, &max_share}, shape, scale_shift,
                   "statistics and their gradients");
  TORCH_CHECK(min_share.numel() == 0 || minimum.numel(), "a minimum's gradient needs the minimum");
  TORCH_CHECK(max_share.numel() == 0 || maximum.numel(), "a maximum's gradient needs the maximum");
  check_like(grads, scale_shift, "grads must be like scale_shift");
  check_like(grad_rows, rows, "grad_rows must be like rows");
  check_like(grad_cols, cols, "grad_cols must be like cols");
  WSGRAPH_DISPATCH(scale_shift, shape.channels, "messages_backward", [&] {
    messages_backward<scalar_t, CHANNELS>(
        shape, scale_shift.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(), rows.data_ptr<scalar_t>(),
        cols.data_ptr<scalar_t>(),
        data_or_null<scalar_t>(minimum), data_or_null<scalar_t>(maximum), data_or_null<scalar_t>(grad_total),
        data_or_null<scalar_t>(grad_squares), data_or_null<scalar_t>(min_share), data_or_null<scalar_t>(max_share),
        grads.data_ptr<scalar_t>(), grad_rows.data_ptr<scalar_t>(), grad_cols.data_ptr<scalar_t>());
  });
}

// edges [B, p, q, F] += rows_i + cols_j, in place.
void add_endpoints_op(const torch::Tensor& edges, const torch::Tensor& rows, const torch::Tensor& cols) {
  const Shape shape = check_inputs(edges, 1, rows, cols, 1);
  WSGRAPH_DISPATCH(edges, shape.channels, "add_endpoints", [&] {
    add_endpoints<scalar_t, CHANNELS>(shape, edges.data_ptr<scalar_t>(), rows.data_ptr<scalar_t>(), cols.data_ptr<scalar_t>());
  });
}

// grad_rows [B, p, F] and grad_cols [B, q, F]: the sums of grad [B, p, q, F] over j and over i.
void endpoint_sums_op(const torch::Tensor& grad, const torch::Tensor& grad_rows, const torch::Tensor& grad_cols) {
  // The endpoint gradients have the shapes of the endpoint terms: the same checks.
  const Shape shape = check_inputs(grad, 1, grad_rows, grad_cols, 1);
  WSGRAPH_DISPATCH(grad, shape.channels, "endpoint_sums", [&] {
    endpoint_sums<scalar_t, CHANNELS>(shape, grad.data_ptr<scalar_t>(), grad_rows.data_ptr<scalar_t>(),
                            grad_cols.data_ptr<scalar_t>());
  });
}

// The first `count` networks of `tensor` from `first` on, or `tensor` itself if it is empty (a statistic not asked for).
torch::Tensor networks(const torch::Tensor& tensor, int64_t first, int64_t count) {
  return tensor.numel() ? tensor.narrow(0, first, count) : tensor;
}

// The statistics a range function writes: [B, R, F] tensors, or empty ones for those not asked for.
struct Statistics {
  torch::Tensor total, squares, minimum, maximum, min_count, max_count;
  Statistics networks(int64_t first, int64_t count) const {
    return {::networks(total, first, count),   ::networks(squares, first, count),
            ::networks(minimum, first, count), ::networks(maximum, first, count),
            ::networks(min_count, first, count), ::networks(max_count, first, count)};
  }
};

// What the backward loop reads besides the edges: the extremes and the gradients of the statistics.
struct StatisticGrads {
  torch::Tensor minimum, maximum, grad_total, grad_squares, min_share, max_share;
  StatisticGrads networks(int64_t first, int64_t count) const {
    return {::networks(minimum, first, count),    ::networks(maximum, first, count),
            ::networks(grad_total, first, count), ::networks(grad_squares, first, count),
            ::networks(min_share, first, count),  ::networks(max_share, first, count)};
  }
};

// The per-chunk buffers of the range functions: allocated once per call, each chunk uses their first rows.
struct Buffer {
  torch::Tensor data;
  Buffer(int64_t rows, int64_t width, const torch::TensorOptions& options) : data(at::empty({rows, width}, options)) {}
  torch::Tensor rows(int64_t count) const { return data.narrow(0, 0, count); }
};

// The messages of `count` networks from `first` on, whose edges are `flat_edges` [count p q, F_e]: FiLM's product
// (edges times weightᵀ, without the bias) into `scale_shift`, then the statistics.
void messages_chunk_forward(const torch::Tensor& flat_edges, const torch::Tensor& weight, const torch::Tensor& bias,
                            const torch::Tensor& rows, const torch::Tensor& cols, int64_t axis,
                            const Statistics& statistics, int64_t first, int64_t count, int64_t p, int64_t q,
                            const Buffer& scale_shift_buffer) {
  auto scale_shift = scale_shift_buffer.rows(count * p * q);
  at::mm_out(scale_shift, flat_edges, weight.t());
  const Statistics out = statistics.networks(first, count);
  messages_forward_op(scale_shift.view({count, p, q, weight.size(0)}), bias, networks(rows, first, count),
                      networks(cols, first, count), axis, out.total, out.squares, out.minimum, out.maximum,
                      out.min_count, out.max_count);
}

// The backward pass of messages_chunk_forward: writes the endpoint gradients and `grad_flat_edges` (the gradients
// of scale and shift times FiLM's weight, plus `addend` where it is defined), and adds to the gradients of FiLM's
// weight and bias.
void messages_chunk_backward(const torch::Tensor& flat_edges, const torch::Tensor& weight, const torch::Tensor& bias,
                             const torch::Tensor& rows, const torch::Tensor& cols, int64_t axis,
                             const StatisticGrads& statistics, int64_t first, int64_t count, int64_t p, int64_t q,
                             const Buffer& scale_shift_buffer, const Buffer& grads_buffer,
                             const torch::Tensor& grad_rows, const torch::Tensor& grad_cols,
                             torch::Tensor grad_flat_edges, const torch::Tensor& addend, torch::Tensor& grad_weight,
                             torch::Tensor& grad_bias) {
  const int64_t width = weight.size(0);
  auto scale_shift = scale_shift_buffer.rows(count * p * q);
  auto grads = grads_buffer.rows(count * p * q);
  at::mm_out(scale_shift, flat_edges, weight.t());
  const StatisticGrads in = statistics.networks(first, count);
  messages_backward_op(scale_shift.view({count, p, q, width}), bias, networks(rows, first, count),
                       networks(cols, first, count), axis, in.minimum, in.maximum, in.grad_total, in.grad_squares,
                       in.min_share, in.max_share, grads.view({count, p, q, width}), networks(grad_rows, first, count),
                       networks(grad_cols, first, count));
  if (addend.defined()) {
    at::addmm_out(grad_flat_edges, addend, grads, weight);
  } else {
    at::mm_out(grad_flat_edges, grads, weight);
  }
  grad_weight.addmm_(grads.t(), flat_edges);
  grad_bias.add_(grads.sum(0));
}

// The networks [start, stop) of `networks`, walked `chunk` at a time.
void check_chunks(int64_t networks, int64_t start, int64_t stop, int64_t chunk) {
  TORCH_CHECK(0 <= start && start <= stop && stop <= networks && chunk > 0, "bad range [", start, ", ", stop,
              ") in chunks of ", chunk, " of ", networks, " networks");
}

void check_range(const torch::Tensor& edges, const torch::Tensor& weight, int64_t start, int64_t stop, int64_t chunk) {
  TORCH_CHECK(edges.dim() == 4 && edges.is_contiguous() && weight.dim() == 2 && weight.size(1) == edges.size(3),
              "expected contiguous edges [B, p, q, F_e] and a weight [out, F_e]");
  check_chunks(edges.size(0), start, stop, chunk);
}

// The rows [n, C] of `count` networks of a contiguous [B, *, C] tensor from `first` on.
torch::Tensor flat_rows(const torch::Tensor& tensor, int64_t first, int64_t count) {
  return tensor.narrow(0, first, count).reshape({-1, tensor.size(-1)});
}

// The messages of the networks [start, stop), `chunk` networks at a time, with FiLM's product of each chunk
// computed into one reused buffer that stays in cache: one call per thread instead of one per chunk.
void messages_forward_range(const torch::Tensor& edges, const torch::Tensor& weight, const torch::Tensor& bias,
                            const torch::Tensor& rows, const torch::Tensor& cols, int64_t axis,
                            const torch::Tensor& total, const torch::Tensor& squares, const torch::Tensor& minimum,
                            const torch::Tensor& maximum, const torch::Tensor& min_count,
                            const torch::Tensor& max_count, int64_t start, int64_t stop, int64_t chunk) {
  check_range(edges, weight, start, stop, chunk);
  const int64_t p = edges.size(1), q = edges.size(2);
  const Buffer scale_shift(std::min(chunk, stop - start) * p * q, weight.size(0), edges.options());
  const Statistics statistics{total, squares, minimum, maximum, min_count, max_count};
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first);
    messages_chunk_forward(flat_rows(edges, first, count), weight, bias, rows, cols, axis, statistics, first,
                           count, p, q, scale_shift);
  }
}

// The backward pass of messages_forward_range over the networks [start, stop): recomputes FiLM's product, writes
// grad_edges and the endpoint gradients, and returns this range's part of the gradients of FiLM's weight and bias.
std::vector<torch::Tensor> messages_backward_range(
    const torch::Tensor& edges, const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& rows,
    const torch::Tensor& cols, int64_t axis, const torch::Tensor& minimum, const torch::Tensor& maximum,
    const torch::Tensor& grad_total, const torch::Tensor& grad_squares, const torch::Tensor& min_share,
    const torch::Tensor& max_share, const torch::Tensor& grad_edges, const torch::Tensor& grad_rows,
    const torch::Tensor& grad_cols, int64_t start, int64_t stop, int64_t chunk) {
  check_range(edges, weight, start, stop, chunk);
  check_like(grad_edges, edges, "grad_edges must be like edges");
  const int64_t p = edges.size(1), q = edges.size(2), rows_most = std::min(chunk, stop - start) * p * q;
  const Buffer scale_shift(rows_most, weight.size(0), edges.options()), grads(rows_most, weight.size(0), edges.options());
  const StatisticGrads statistics{minimum, maximum, grad_total, grad_squares, min_share, max_share};
  auto grad_weight = at::zeros_like(weight);
  auto grad_bias = at::zeros_like(bias);
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first);
    messages_chunk_backward(flat_rows(edges, first, count), weight, bias, rows, cols, axis, statistics, first,
                            count, p, q, scale_shift, grads, grad_rows, grad_cols,
                            flat_rows(grad_edges, first, count), torch::Tensor(), grad_weight, grad_bias);
  }
  return {grad_weight, grad_bias};
}

void check_update(const torch::Tensor& edges, const torch::Tensor& update_weight, const torch::Tensor& weight,
                  std::initializer_list<std::pair<const torch::Tensor*, const char*>> like_updated) {
  TORCH_CHECK(update_weight.dim() == 2 && update_weight.size(1) == edges.size(3) &&
                  update_weight.size(0) == weight.size(1),
              "expected an update weight [F, F_e] whose output FiLM's weight [2F, F] reads");
  for (const auto& [tensor, message] : like_updated) {
    TORCH_CHECK(tensor->numel() == 0 || (tensor->is_contiguous() && tensor->dim() == 4 &&
                                         tensor->sizes().slice(0, 3) == edges.sizes().slice(0, 3) &&
                                         tensor->size(3) == update_weight.size(0) &&
                                         tensor->scalar_type() == edges.scalar_type()),
                message, " must be empty or contiguous [B, p, q, F] of the edges' dtype");
  }
}

// The edge update, SiLU(edges update_weightᵀ + update_rows_i + update_cols_j), then the messages of its result,
// over the networks [start, stop), `chunk` at a time: the updated edges are read by FiLM's product while they
// are in cache, and written to `updated` only where it is not empty (a later round reads them). The update's
// pre-activation is written to `pre` [B, p, q, F], for the backward pass.
void update_messages_forward_range(const torch::Tensor& edges, const torch::Tensor& update_weight,
                                   const torch::Tensor& update_rows, const torch::Tensor& update_cols,
                                   const torch::Tensor& weight, const torch::Tensor& bias, const torch::Tensor& rows,
                                   const torch::Tensor& cols, int64_t axis, const torch::Tensor& total,
                                   const torch::Tensor& squares, const torch::Tensor& minimum,
                                   const torch::Tensor& maximum, const torch::Tensor& min_count,
                                   const torch::Tensor& max_count, const torch::Tensor& updated,
                                   const torch::Tensor& pre, int64_t start, int64_t stop, int64_t chunk) {
  check_range(edges, update_weight, start, stop, chunk);
  check_update(edges, update_weight, weight, {{&updated, "updated edges"}, {&pre, "pre"}});
  TORCH_CHECK(pre.numel(), "pre must be given");
  const int64_t p = edges.size(1), q = edges.size(2), channels = update_weight.size(0);
  const int64_t rows_most = std::min(chunk, stop - start) * p * q;
  const Buffer updated_buffer(updated.numel() ? 0 : rows_most, channels, edges.options()),
      scale_shift(rows_most, weight.size(0), edges.options());
  const Statistics statistics{total, squares, minimum, maximum, min_count, max_count};
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first);
    auto chunk_pre = flat_rows(pre, first, count);
    at::mm_out(chunk_pre, flat_rows(edges, first, count), update_weight.t());
    add_endpoints_op(chunk_pre.view({count, p, q, channels}), networks(update_rows, first, count),
                     networks(update_cols, first, count));
    auto chunk_updated = updated.numel() ? flat_rows(updated, first, count) : updated_buffer.rows(count * p * q);
    at::silu_out(chunk_updated, chunk_pre);
    messages_chunk_forward(chunk_updated, weight, bias, rows, cols, axis, statistics, first, count, p, q,
                           scale_shift);
  }
}

// The backward pass of update_messages_forward_range over the networks [start, stop), from its `pre` and, where
// it kept them, `updated` edges (empty: computed again); FiLM's product is computed again chunk by chunk. The
// updated edges' gradient is the messages' plus `grad_updated` (empty: none from later rounds). Writes
// grad_edges and the endpoint gradients of the update and of the messages, and returns this range's part of the
// gradients of update_weight, FiLM's weight and FiLM's bias.
std::vector<torch::Tensor> update_messages_backward_range(
    const torch::Tensor& edges, const torch::Tensor& update_weight, const torch::Tensor& update_rows,
    const torch::Tensor& update_cols, const torch::Tensor& weight, const torch::Tensor& bias,
    const torch::Tensor& rows, const torch::Tensor& cols, int64_t axis, const torch::Tensor& minimum,
    const torch::Tensor& maximum, const torch::Tensor& grad_total, const torch::Tensor& grad_squares,
    const torch::Tensor& min_share, const torch::Tensor& max_share, const torch::Tensor& pre,
    const torch::Tensor& updated, const torch::Tensor& grad_updated, const torch::Tensor& grad_edges,
    const torch::Tensor& grad_update_rows, const torch::Tensor& grad_update_cols, const torch::Tensor& grad_rows,
    const torch::Tensor& grad_cols, int64_t start, int64_t stop, int64_t chunk) {
  check_range(edges, update_weight, start, stop, chunk);
  check_update(edges, update_weight, weight,
               {{&pre, "pre"}, {&updated, "updated edges"}, {&grad_updated, "their gradient"}});
  TORCH_CHECK(pre.numel(), "pre must be given");
  check_like(grad_edges, edges, "grad_edges must be like edges");
  check_like(grad_update_rows, update_rows, "grad_update_rows must be like update_rows");
  check_like(grad_update_cols, update_cols, "grad_update_cols must be like update_cols");
  const int64_t p = edges.size(1), q = edges.size(2), channels = update_weight.size(0);
  const int64_t rows_most = std::min(chunk, stop - start) * p * q;
  const auto options = edges.options();
  const Buffer updated_buffer(updated.numel() ? 0 : rows_most, channels, options),
      grad_updated_buffer(rows_most, channels, options), grad_pre(rows_most, channels, options),
      scale_shift(rows_most, weight.size(0), options), grads(rows_most, weight.size(0), options);
  const StatisticGrads statistics{minimum, maximum, grad_total, grad_squares, min_share, max_share};
  auto grad_update_weight = at::zeros_like(update_weight);
  auto grad_weight = at::zeros_like(weight);
  auto grad_bias = at::zeros_like(bias);
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first), size = count * p * q;
    const auto chunk_pre = flat_rows(pre, first, count);
    torch::Tensor chunk_updated;
    if (updated.numel()) {
      chunk_updated = flat_rows(updated, first, count);
    } else {
      chunk_updated = updated_buffer.rows(size);
      at::silu_out(chunk_updated, chunk_pre);
    }
    auto chunk_grad_updated = grad_updated_buffer.rows(size);
    messages_chunk_backward(chunk_updated, weight, bias, rows, cols, axis, statistics, first, count, p, q,
                            scale_shift, grads, grad_rows, grad_cols, chunk_grad_updated,
                            grad_updated.numel() ? flat_rows(grad_updated, first, count) : torch::Tensor(),
                            grad_weight, grad_bias);
    auto chunk_grad_pre = grad_pre.rows(size);
    at::silu_backward_out(chunk_grad_pre, chunk_grad_updated, chunk_pre);
    endpoint_sums_op(chunk_grad_pre.view({count, p, q, channels}), networks(grad_update_rows, first, count),
                     networks(grad_update_cols, first, count));
    auto chunk_grad_edges = flat_rows(grad_edges, first, count);
    at::mm_out(chunk_grad_edges, chunk_grad_pre, update_weight);
    grad_update_weight.addmm_(chunk_grad_pre.t(), flat_rows(edges, first, count));
  }
  return {grad_update_weight, grad_weight, grad_bias};
}

// Whether fourier_features_chunk computes a chunk of `raw` in FloatSinCos's vector loops, which need no angles.
bool takes_float_sincos(const torch::Tensor& raw, const torch::Tensor& frequencies) {
#if WSGRAPH_VECTORS
  return raw.size(-1) == 1 && raw.scalar_type() == at::kFloat && frequencies.size(0) % Vectors<float>::lanes == 0;
#else
  return false;
#endif
}

// The cosines and sines of the angles raw Ωᵀ of a chunk's rows raw [n, C] (frequencies Ω [K, C]) into `cosines` and
// `sines` [n, K]. One input channel (a weight) makes the angles an outer product, not a matrix product; in float32,
// with K a whole number of vectors, FloatSinCos takes it without writing the angles.
// `angles` [n, K] is scratch for the other paths, and may be empty where takes_float_sincos.
void fourier_features_chunk(const torch::Tensor& raw, const torch::Tensor& frequencies, torch::Tensor& angles,
                            torch::Tensor& cosines, torch::Tensor& sines) {
#if WSGRAPH_VECTORS
  if (takes_float_sincos(raw, frequencies)) {
    FloatSinCos::outer(raw.data_ptr<float>(), frequencies.data_ptr<float>(), raw.size(0), frequencies.size(0),
                       cosines.data_ptr<float>(), sines.data_ptr<float>());
    return;
  }
#endif
  if (raw.size(1) == 1) {
    at::mul_out(angles, raw, frequencies.view({1, -1}));
  } else {
    at::mm_out(angles, raw, frequencies.t());
  }
  at::cos_out(cosines, angles);
  at::sin_out(sines, angles);
}

void check_fourier(const torch::Tensor& raw, const torch::Tensor& frequencies, int64_t start, int64_t stop,
                   int64_t chunk) {
  TORCH_CHECK(raw.dim() >= 2 && raw.is_contiguous() && raw.device().is_cpu(), "raw must be contiguous CPU [B, *, C]");
  TORCH_CHECK(frequencies.dim() == 2 && frequencies.size(1) == raw.size(-1) &&
                  frequencies.scalar_type() == raw.scalar_type(),
              "frequencies must be [K, C] of raw's dtype");
  check_chunks(raw.size(0), start, stop, chunk);
}

// out [B, *, F] = [cos(raw Ωᵀ), sin(raw Ωᵀ)] weightᵀ + bias (`bias` empty: none) over the networks [start, stop),
// `chunk` at a time: a chunk's angles, cosines and sines stay in cache for the product.
void fourier_forward_range(const torch::Tensor& raw, const torch::Tensor& frequencies, const torch::Tensor& weight,
                           const torch::Tensor& bias, const torch::Tensor& out, int64_t start, int64_t stop,
                           int64_t chunk) {
  check_fourier(raw, frequencies, start, stop, chunk);
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == 2 * frequencies.size(0) && weight.scalar_type() == raw.scalar_type(),
              "weight must be [F, 2K] of raw's dtype");
  TORCH_CHECK(out.is_contiguous() && out.size(0) == raw.size(0) && out.size(-1) == weight.size(0) &&
                  out.numel() / weight.size(0) == raw.numel() / raw.size(-1) && out.scalar_type() == raw.scalar_type(),
              "out must be contiguous [B, *, F] of raw's dtype");
  const int64_t K = frequencies.size(0), per_network = raw.numel() / std::max<int64_t>(raw.size(0), 1) / raw.size(-1);
  const int64_t rows_most = std::min(chunk, stop - start) * per_network;
  const Buffer angles(takes_float_sincos(raw, frequencies) ? 0 : rows_most, K, raw.options()),
      cosines(rows_most, K, raw.options()), sines(rows_most, K, raw.options());
  const auto cosine_weight = weight.narrow(1, 0, K).t(), sine_weight = weight.narrow(1, K, K).t();
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first), size = count * per_network;
    auto chunk_angles = angles.data.size(0) ? angles.rows(size) : angles.data;
    auto chunk_cosines = cosines.rows(size), chunk_sines = sines.rows(size);
    fourier_features_chunk(flat_rows(raw, first, count), frequencies, chunk_angles, chunk_cosines, chunk_sines);
    auto chunk_out = flat_rows(out, first, count);
    if (bias.numel()) {
      at::addmm_out(chunk_out, bias, chunk_cosines, cosine_weight);
    } else {
      at::mm_out(chunk_out, chunk_cosines, cosine_weight);
    }
    chunk_out.addmm_(chunk_sines, sine_weight);
  }
}

// This range's part of the gradient of fourier_forward_range's weight, [F, 2K], for the gradient grad_out [B, *, F]
// of its output: the features are computed again, chunk by chunk.
torch::Tensor fourier_backward_range(const torch::Tensor& raw, const torch::Tensor& frequencies,
                                     const torch::Tensor& grad_out, int64_t start, int64_t stop, int64_t chunk) {
  check_fourier(raw, frequencies, start, stop, chunk);
  TORCH_CHECK(grad_out.is_contiguous() && grad_out.size(0) == raw.size(0) &&
                  grad_out.numel() / grad_out.size(-1) == raw.numel() / raw.size(-1),
              "grad_out must be contiguous [B, *, F]");
  const int64_t K = frequencies.size(0), F = grad_out.size(-1);
  const int64_t per_network = raw.numel() / std::max<int64_t>(raw.size(0), 1) / raw.size(-1);
  const int64_t rows_most = std::min(chunk, stop - start) * per_network;
  const Buffer angles(takes_float_sincos(raw, frequencies) ? 0 : rows_most, K, raw.options()),
      cosines(rows_most, K, raw.options()), sines(rows_most, K, raw.options());
  auto grad_weight = at::zeros({F, 2 * K}, raw.options());
  auto grad_cosine = grad_weight.narrow(1, 0, K), grad_sine = grad_weight.narrow(1, K, K);
  for (int64_t first = start; first < stop; first += chunk) {
    const int64_t count = std::min(chunk, stop - first), size = count * per_network;
    auto chunk_angles = angles.data.size(0) ? angles.rows(size) : angles.data;
    auto chunk_cosines = cosines.rows(size), chunk_sines = sines.rows(size);
    fourier_features_chunk(flat_rows(raw, first, count), frequencies, chunk_angles, chunk_cosines, chunk_sines);
    const auto grad = flat_rows(grad_out, first, count).t();
    grad_cosine.addmm_(grad, chunk_cosines);
    grad_sine.addmm_(grad, chunk_sines);
  }
  return grad_weight;
}

}  // namespace

// Without the GIL: the fused backend calls these from several threads at once.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  namespace py = pybind11;
  module.def("messages_forward_range", &messages_forward_range, py::call_guard<py::gil_scoped_release>());
  module.def("messages_backward_range", &messages_backward_range, py::call_guard<py::gil_scoped_release>());
  module.def("update_messages_forward_range", &update_messages_forward_range,
             py::call_guard<py::gil_scoped_release>());
  module.def("update_messages_backward_range", &update_messages_backward_range,
             py::call_guard<py::gil_scoped_release>());
  module.def("fourier_forward_range", &fourier_forward_range, py::call_guard<py::gil_scoped_release>());
  module.def("fourier_backward_range", &fourier_backward_range, py::call_guard<py::gil_scoped_release>());
  module.def("add_endpoints", &add_endpoints_op, py::call_guard<py::gil_scoped_release>());
  module.def("endpoint_sums", &endpoint_sums_op, py::call_guard<py::gil_scoped_release>());
}
