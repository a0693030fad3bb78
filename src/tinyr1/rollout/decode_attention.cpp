// One layer's attention for a decode step of `GroupedDecoder` (decoder.py), as one CPU kernel,
// and the two small steps around it (RMSNorm; rotary embedding + cache write) fused (at the end).
//
// Built on first use by rollout/native.py (torch.utils.cpp_extension, -O3 -march=native); the
// eager-PyTorch path in decoder.py computes the same thing and is used where this is not built.
//
// Layout (the decoder's native caches):
//   q      (R, Hkv, G, D)      row r's G query heads per kv head, already scaled ((G, D) contiguous)
//   pk     (P, Hkv, Bp, D, 16) prompt p's keys in blocks of 16 positions, zero-padded to Bp*16
//   pv     (P, Hkv, W, D)      prompt p's values (W real positions, left padding included)
//   pbias  (P, Bp*16) float32  0 at a prompt's real tokens, -1e30 at padding
//   rk     (S, Hkv, Br, D, 16) response keys in blocks of 16 positions, one slot per row ever started
//   rv     (S, Hkv, L, D)      response values, same slots
//   length                     response positions filled (the same for every row), >= 1
//   group  (R,) int64          the prompt each row continues
//   slot   (R,) int64          the slot of rk / rv holding each row's response (rows that finished
//                              are dropped from group and slot; nothing is copied)
// Output (R, Hkv * G * D) in q's dtype: softmax over [prompt | response] of q.k, times v.
//
// Per (row, kv head), the G query heads share every key and value read: scores are 16 positions
// at a time (G accumulators over the head dimension), probabilities in float32, the weighted sum
// of values with G x 64 accumulators. Keys and values are read once, with the next block
// prefetched; the prompt's are shared by its rows and stay in cache. At batch 64 on the 135M model
// this is about half the time of the same attention as eager matmuls (benchmarks/RESULTS.md).

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t kBlock = 16;  // positions per key block = float lanes per vector
typedef float vec __attribute__((vector_size(64)));
typedef uint32_t uvec __attribute__((vector_size(64)));
typedef uint16_t hvec __attribute__((vector_size(32)));

inline vec load(const float* p) {
  vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline vec load(const c10::BFloat16* p) {  // 16 bfloat16 -> float32: the high half of each float
#if defined(__AVX512F__)
  const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return reinterpret_cast<vec>(_mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
#else
  hvec h;
  std::memcpy(&h, p, sizeof(h));
  const uvec u = __builtin_convertvector(h, uvec) << 16;
  vec v;
  std::memcpy(&v, &u, sizeof(v));
  return v;
#endif
}

inline void store(float* p, vec v) { std::memcpy(p, &v, sizeof(v)); }

// s[j][b * 16 + i] = q[j] . k[b][:, i] for blocks b < blocks; k's blocks are `stride` apart.
template <typename T, int G>
inline void scores(const float* q, int64_t d, const T* k, int64_t stride, int64_t blocks, float* s, int64_t ss) {
  for (int64_t b = 0; b < blocks; ++b) {
    vec acc[G] = {};
    const T* kb = k + b * stride;
    for (int64_t e = 0; e < d; ++e) {
      __builtin_prefetch(kb + stride + e * kBlock);
      const vec kv = load(kb + e * kBlock);
      for (int j = 0; j < G; ++j) acc[j] += q[j * d + e] * kv;
    }
    for (int j = 0; j < G; ++j) store(s + j * ss + b * kBlock, acc[j]);
  }
}

// o[j][c0 : c0 + 16C] += sum_{p < n} w[j][p] v[p][c0 : c0 + 16C]; v's rows are `stride` apart.
template <typename T, int G, int C>
inline void weighted_chunk(const float* w, int64_t ws, const T* v, int64_t stride, int64_t n, int64_t c0,
                           int64_t d, float* o) {
  vec acc[G][C] = {};
  for (int64_t p = 0; p < n; ++p) {
    const T* row = v + p * stride + c0;
    __builtin_prefetch(row + 6 * stride);
    __builtin_prefetch(row + 6 * stride + 32);
    vec x[C];
    for (int c = 0; c < C; ++c) x[c] = load(row + c * kBlock);
    for (int j = 0; j < G; ++j) {
      const float a = w[j * ws + p];
      for (int c = 0; c < C; ++c) acc[j][c] += a * x[c];
    }
  }
  for (int j = 0; j < G; ++j)
    for (int c = 0; c < C; ++c) {
      float* dst = o + j * d + c0 + c * kBlock;
      store(dst, load(dst) + acc[j][c]);
    }
}

template <typename T, int G>
inline void weighted(const float* w, int64_t ws, const T* v, int64_t stride, int64_t n, int64_t d, float* o) {
  int64_t c0 = 0;
  for (; c0 + 4 * kBlock <= d; c0 += 4 * kBlock) weighted_chunk<T, G, 4>(w, ws, v, stride, n, c0, d, o);
  switch ((d - c0) / kBlock) {
    case 3: weighted_chunk<T, G, 3>(w, ws, v, stride, n, c0, d, o); break;
    case 2: weighted_chunk<T, G, 2>(w, ws, v, stride, n, c0, d, o); break;
    case 1: weighted_chunk<T, G, 1>(w, ws, v, stride, n, c0, d, o); break;
    default: break;
  }
}

template <typename T, int G>
void attend(const at::Tensor& q, const at::Tensor& pk, const at::Tensor& pv, const at::Tensor& pbias,
            const at::Tensor& rk, const at::Tensor& rv, int64_t length, const at::Tensor& group, const at::Tensor& slot,
            at::Tensor& out) {
  const int64_t rows = q.size(0), hkv = q.size(1), d = q.size(3);
  const int64_t prompt_blocks = pk.size(2), width = prompt_blocks * kBlock, real_width = pv.size(2);
  const int64_t resp_blocks = (length + kBlock - 1) / kBlock;
  const int64_t ss = width + resp_blocks * kBlock, live = width + length;  // score row stride, positions
  const T* qp = q.data_ptr<T>();
  const T* pkp = pk.data_ptr<T>();
  const T* pvp = pv.data_ptr<T>();
  const float* biasp = pbias.data_ptr<float>();
  const T* rkp = rk.data_ptr<T>();
  const T* rvp = rv.data_ptr<T>();
  const int64_t* groups = group.data_ptr<int64_t>();
  const int64_t* slots = slot.data_ptr<int64_t>();
  T* outp = out.data_ptr<T>();
  at::parallel_for(0, rows * hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> s(G * ss), qf(G * d), o(G * d);
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / hkv, h = item % hkv, p = groups[r], sl = slots[r];
      const T* qs = qp + r * q.stride(0) + h * q.stride(1);
      for (int64_t i = 0; i < G * d; ++i) qf[i] = static_cast<float>(qs[i]);
      scores<T, G>(qf.data(), d, pkp + p * pk.stride(0) + h * pk.stride(1), pk.stride(2), prompt_blocks, s.data(), ss);
      scores<T, G>(qf.data(), d, rkp + sl * rk.stride(0) + h * rk.stride(1), rk.stride(2), resp_blocks,
                   s.data() + width, ss);
      const float* bias = biasp + p * pbias.stride(0);
      for (int j = 0; j < G; ++j) {  // softmax over the prompt's real tokens and `length` response positions
        float* sj = s.data() + j * ss;
        for (int64_t i = 0; i < width; ++i) sj[i] += bias[i];
        float m = -1e30f;
        for (int64_t i = 0; i < live; ++i) m = std::max(m, sj[i]);
        float sum = 0.f;
        for (int64_t i = 0; i < live; ++i) {
          sj[i] = std::exp(sj[i] - m);
          sum += sj[i];
        }
        const float inv = 1.f / sum;
        for (int64_t i = 0; i < live; ++i) sj[i] *= inv;
      }
      std::fill(o.begin(), o.end(), 0.f);
      weighted<T, G>(s.data(), ss, pvp + p * pv.stride(0) + h * pv.stride(1), pv.stride(2), real_width, d, o.data());
      weighted<T, G>(s.data() + width, ss, rvp + sl * rv.stride(0) + h * rv.stride(1), rv.stride(2), length, d,
                     o.data());
      T* dst = outp + r * out.stride(0) + h * G * d;
      for (int64_t i = 0; i < G * d; ++i) dst[i] = static_cast<T>(o[i]);
    }
  });
}

void check_slots(const at::Tensor& slot, int64_t rows, int64_t slots) {
  TORCH_CHECK(slot.scalar_type() == at::kLong && slot.dim() == 1 && slot.size(0) == rows && slot.is_contiguous(),
              "slot must be int64 (rows,)");
  const int64_t* s = slot.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    TORCH_CHECK(s[r] >= 0 && s[r] < slots, "row ", r, " in response slot ", s[r], " of ", slots);
}

void check(const at::Tensor& q, const at::Tensor& pk, const at::Tensor& pv, const at::Tensor& pbias,
           const at::Tensor& rk, const at::Tensor& rv, int64_t length, const at::Tensor& group, const at::Tensor& slot) {
  TORCH_CHECK(q.dim() == 4, "q must be (rows, kv heads, group, head dim)");
  const int64_t rows = q.size(0), hkv = q.size(1), d = q.size(3);
  TORCH_CHECK(q.stride(3) == 1 && q.stride(2) == d, "each (row, kv head)'s group of queries must be contiguous");
  TORCH_CHECK(d % kBlock == 0, "head dim must be a multiple of 16, got ", d);
  for (const at::Tensor* t : {&pk, &pv, &rk, &rv})
    TORCH_CHECK(t->scalar_type() == q.scalar_type() && t->device().is_cpu(), "caches must be CPU tensors of q's dtype");
  TORCH_CHECK(pk.dim() == 5 && pk.size(1) == hkv && pk.size(3) == d && pk.size(4) == kBlock && pk.stride(4) == 1 &&
                  pk.stride(3) == kBlock && pk.stride(2) == d * kBlock,
              "prompt keys must be (prompts, kv heads, blocks, head dim, 16) with contiguous blocks");
  TORCH_CHECK(rk.dim() == 5 && rk.size(1) == hkv && rk.size(3) == d && rk.size(4) == kBlock &&
                  rk.stride(4) == 1 && rk.stride(3) == kBlock && rk.stride(2) == d * kBlock,
              "response keys must be (slots, kv heads, blocks, head dim, 16) with contiguous blocks");
  TORCH_CHECK(pv.dim() == 4 && pv.size(0) == pk.size(0) && pv.size(1) == hkv && pv.size(3) == d &&
                  pv.stride(3) == 1 && pv.size(2) <= pk.size(2) * kBlock,
              "prompt values must be (prompts, kv heads, width, head dim), head dim contiguous");
  TORCH_CHECK(rv.dim() == 4 && rv.size(0) == rk.size(0) && rv.size(1) == hkv && rv.size(3) == d && rv.stride(3) == 1,
              "response values must be (slots, kv heads, positions, head dim), head dim contiguous");
  TORCH_CHECK(length >= 1 && length <= rk.size(2) * kBlock && length <= rv.size(2), "length ", length,
              " outside the response buffers");
  TORCH_CHECK(pbias.scalar_type() == at::kFloat && pbias.dim() == 2 && pbias.size(0) == pk.size(0) &&
                  pbias.size(1) == pk.size(2) * kBlock && pbias.stride(1) == 1,
              "prompt bias must be float32 (prompts, prompt blocks * 16)");
  TORCH_CHECK(group.scalar_type() == at::kLong && group.dim() == 1 && group.size(0) == rows && group.is_contiguous(),
              "group must be int64 (rows,)");
  const int64_t* g = group.data_ptr<int64_t>();
  for (int64_t r = 0; r < rows; ++r)
    TORCH_CHECK(g[r] >= 0 && g[r] < pk.size(0), "row ", r, " continues prompt ", g[r], " of ", pk.size(0));
  check_slots(slot, rows, rk.size(0));
}

template <typename T>
void dispatch(const at::Tensor& q, const at::Tensor& pk, const at::Tensor& pv, const at::Tensor& pbias,
              const at::Tensor& rk, const at::Tensor& rv, int64_t length, const at::Tensor& group, const at::Tensor& slot,
              at::Tensor& out) {
  switch (q.size(2)) {
#define CASE(G) \
  case G: return attend<T, G>(q, pk, pv, pbias, rk, rv, length, group, slot, out);
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    default: TORCH_CHECK(false, "decode_attention: at most 8 query heads per kv head, got ", q.size(2));
  }
}

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& pk, const at::Tensor& pv, const at::Tensor& pbias,
                            const at::Tensor& rk, const at::Tensor& rv, int64_t length, const at::Tensor& group,
                            const at::Tensor& slot) {
  check(q, pk, pv, pbias, rk, rv, length, group, slot);
  at::Tensor out = at::empty({q.size(0), q.size(1) * q.size(2) * q.size(3)}, q.options());
  if (q.scalar_type() == at::kBFloat16) {
    dispatch<c10::BFloat16>(q, pk, pv, pbias, rk, rv, length, group, slot, out);
  } else {
    TORCH_CHECK(q.scalar_type() == at::kFloat, "decode_attention: float32 or bfloat16, got ", q.scalar_type());
    dispatch<float>(q, pk, pv, pbias, rk, rv, length, group, slot, out);
  }
  return out;
}

// ---- the small ops around attention, fused: each is one call instead of 5-8 eager ones ----------

inline float round_like(float x, float) { return x; }
inline float round_like(float x, c10::BFloat16) { return static_cast<float>(static_cast<c10::BFloat16>(x)); }

// transformers' Llama RMSNorm: x * rsqrt(mean(x^2) + eps) in float32, rounded to x's dtype, times w
template <typename T>
void rms_norm_rows(const at::Tensor& x, const at::Tensor& w, double eps, at::Tensor& out) {
  const int64_t rows = x.size(0), h = x.size(1);
  const T* xp = x.data_ptr<T>();
  const T* wp = w.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = xp + r * h;
      float ss = 0.f;
      for (int64_t i = 0; i < h; ++i) ss += static_cast<float>(xr[i]) * static_cast<float>(xr[i]);
      const float scale = 1.f / std::sqrt(ss / h + static_cast<float>(eps));
      for (int64_t i = 0; i < h; ++i)
        op[r * h + i] = static_cast<T>(round_like(static_cast<float>(xr[i]) * scale, T()) * static_cast<float>(wp[i]));
    }
  });
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& w, double eps) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && w.dim() == 1 && w.size(0) == x.size(1) && w.is_contiguous() &&
                  w.scalar_type() == x.scalar_type(),
              "rms_norm: x (rows, hidden) contiguous and a weight (hidden,) of its dtype");
  at::Tensor out = at::empty_like(x);
  if (x.scalar_type() == at::kBFloat16) {
    rms_norm_rows<c10::BFloat16>(x, w, eps, out);
  } else {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "rms_norm: float32 or bfloat16, got ", x.scalar_type());
    rms_norm_rows<float>(x, w, eps, out);
  }
  return out;
}

// Rotary embedding of the new token's q and k heads (x * cos + rotate_half(x) * sin, computed in
// float32), k written into response position t of row r's slot slot[r] of the blocked key buffer,
// v into the value buffer; returns the rotated q (rows, heads, head dim).
inline void store(c10::BFloat16* p, vec v) {  // round to nearest even, as c10::BFloat16(float)
#if defined(__AVX512BF16__)
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(reinterpret_cast<__m512>(v))));
#else
  for (int i = 0; i < kBlock; ++i) p[i] = static_cast<c10::BFloat16>(v[i]);
#endif
}

// y = x * c + rotate_half(x) * s for one head of d values (rotate_half(x) = [-x2, x1] for x = [x1, x2]),
// in float32, 16 lanes at a time where half of d allows, into y (contiguous) or, with `step` 16,
// a key block's column (y[e * 16])
template <typename T>
inline void rotate(const T* x, const T* c, const T* s, int64_t d, T* y, int64_t step) {
  const int64_t half = d / 2;
  int64_t e = 0;
  for (; e + kBlock <= half; e += kBlock) {
    const vec x1 = load(x + e), x2 = load(x + half + e);
    const vec y1 = x1 * load(c + e) - x2 * load(s + e);
    const vec y2 = x2 * load(c + half + e) + x1 * load(s + half + e);
    if (step == 1) {
      store(y + e, y1);
      store(y + half + e, y2);
    } else {
      for (int i = 0; i < kBlock; ++i) {
        y[(e + i) * step] = static_cast<T>(y1[i]);
        y[(half + e + i) * step] = static_cast<T>(y2[i]);
      }
    }
  }
  for (; e < half; ++e) {
    const float x1 = static_cast<float>(x[e]), x2 = static_cast<float>(x[half + e]);
    y[e * step] = static_cast<T>(x1 * static_cast<float>(c[e]) - x2 * static_cast<float>(s[e]));
    y[(half + e) * step] = static_cast<T>(x2 * static_cast<float>(c[half + e]) + x1 * static_cast<float>(s[half + e]));
  }
}

template <typename T>
void rotary_rows(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& rk, at::Tensor& rv,
                 const at::Tensor& slot, int64_t t, at::Tensor& q) {
  const int64_t rows = qkv.size(0), h = q.size(1), d = q.size(2), hkv = rk.size(1);
  const T* xp = qkv.data_ptr<T>();
  const T* cp = cos.data_ptr<T>();
  const T* sp = sin.data_ptr<T>();
  T* qp = q.data_ptr<T>();
  T* kp = rk.data_ptr<T>();
  T* vp = rv.data_ptr<T>();
  const int64_t* slots = slot.data_ptr<int64_t>();
  const int64_t width = qkv.size(1), block = t / kBlock, lane = t % kBlock;
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t j = 0; j < h + hkv; ++j) {
        const int64_t at = (r * (h + hkv) + j) * d;
        if (j < h) rotate(xp + r * width + j * d, cp + at, sp + at, d, qp + (r * h + j) * d, 1);
        else rotate(xp + r * width + j * d, cp + at, sp + at, d,
                    kp + slots[r] * rk.stride(0) + (j - h) * rk.stride(1) + block * rk.stride(2) + lane, kBlock);
      }
      const T* v = xp + r * width + (h + hkv) * d;
      for (int64_t k = 0; k < hkv; ++k)
        std::memcpy(vp + slots[r] * rv.stride(0) + k * rv.stride(1) + t * rv.stride(2), v + k * d, d * sizeof(T));
    }
  });
}

at::Tensor rotary_append(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& rk,
                         at::Tensor& rv, const at::Tensor& slot, int64_t heads, int64_t t) {
  const int64_t rows = qkv.size(0), hkv = rk.size(1), d = rk.size(3);
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous() && qkv.size(1) == (heads + 2 * hkv) * d,
              "rotary_append: qkv (rows, (heads + 2 kv heads) * head dim) contiguous");
  TORCH_CHECK(cos.is_contiguous() && sin.is_contiguous() && cos.numel() == rows * (heads + hkv) * d &&
                  sin.numel() == cos.numel() && cos.scalar_type() == qkv.scalar_type() &&
                  sin.scalar_type() == qkv.scalar_type(),
              "rotary_append: cos and sin (rows, heads + kv heads, head dim) contiguous, qkv's dtype");
  TORCH_CHECK(rk.scalar_type() == qkv.scalar_type() && rv.scalar_type() == qkv.scalar_type() && rk.dim() == 5 &&
                  rk.size(4) == kBlock && rk.stride(4) == 1 && rk.stride(3) == kBlock &&
                  rv.dim() == 4 && rv.size(0) == rk.size(0) && rv.size(1) == hkv && rv.size(3) == d && rv.stride(3) == 1,
              "rotary_append: key / value buffers in the decoder's layout");
  TORCH_CHECK(t >= 0 && t < rk.size(2) * kBlock && t < rv.size(2) && d % 2 == 0, "rotary_append: position ", t,
              " outside the buffers");
  check_slots(slot, rows, rk.size(0));
  at::Tensor q = at::empty({rows, heads, d}, qkv.options());
  if (qkv.scalar_type() == at::kBFloat16) {
    rotary_rows<c10::BFloat16>(qkv, cos, sin, rk, rv, slot, t, q);
  } else {
    TORCH_CHECK(qkv.scalar_type() == at::kFloat, "rotary_append: float32 or bfloat16, got ", qkv.scalar_type());
    rotary_rows<float>(qkv, cos, sin, rk, rv, slot, t, q);
  }
  return q;
}

// The MLP's activation on the fused gate|up projection: silu(gate) * up, each rounded to the
// dtype as transformers' `act_fn(gate_proj(x)) * up_proj(x)` rounds them. y (rows, 2 I) -> (rows, I).
template <typename T>
void silu_mul_rows(const at::Tensor& y, at::Tensor& out) {
  const int64_t rows = y.size(0), inner = y.size(1) / 2;
  const T* yp = y.data_ptr<T>();
  T* op = out.data_ptr<T>();
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> a(inner);
    for (int64_t r = begin; r < end; ++r) {
      const T* g = yp + r * 2 * inner;
      const T* u = g + inner;
      for (int64_t i = 0; i < inner; ++i) a[i] = static_cast<float>(g[i]);
      // exp's argument kept finite (fast-math assumes no infinities): silu(-100) is then -2e-33, not -0
      for (int64_t i = 0; i < inner; ++i) a[i] = a[i] / (1.f + std::exp(std::min(-a[i], 80.f)));
      for (int64_t i = 0; i < inner; ++i)
        op[r * inner + i] = static_cast<T>(round_like(a[i], T()) * static_cast<float>(u[i]));
    }
  });
}

at::Tensor silu_mul(const at::Tensor& y) {
  TORCH_CHECK(y.dim() == 2 && y.is_contiguous() && y.size(1) % 2 == 0,
              "silu_mul: y (rows, 2 x intermediate) contiguous, gate then up");
  at::Tensor out = at::empty({y.size(0), y.size(1) / 2}, y.options());
  if (y.scalar_type() == at::kBFloat16) {
    silu_mul_rows<c10::BFloat16>(y, out);
  } else {
    TORCH_CHECK(y.scalar_type() == at::kFloat, "silu_mul: float32 or bfloat16, got ", y.scalar_type());
    silu_mul_rows<float>(y, out);
  }
  return out;
}

// ---- the draw: the next token of each row from its logits, in one pass over the vocabulary ----
//
// Row r's token is drawn from softmax(logits[r] / temperature) by inverting its cumulative
// distribution at u[r] in [0, 1), in two levels as rollout/engine.py's `inverse_cdf`: block masses
// of kDrawBlock tokens (float32 inside a block, float64 across blocks: a single float32 running
// sum over 49k tokens would swallow tokens below ~1e-7 of the total), then the token inside the
// chosen block. Also returns the token's log-probability at temperature 1 (the policy's own
// distribution, what the update recomputes). One read of the logits for the maximum, one for the
// block masses, one block again for the token: no (rows, vocab) float32 copies, probabilities or
// cumulative sums are written (those, and their page faults, cost more than the arithmetic).
// Logits must be finite (a model's are; masking to -inf is the eager path's job).

constexpr int64_t kDrawBlock = 256;

template <typename T>
inline void block_exp(const T* x, int64_t n, float m, float scale, float* out) {  // out = exp((x - m) * scale)
  for (int64_t i = 0; i < n; ++i) out[i] = std::exp((static_cast<float>(x[i]) - m) * scale);
}

template <typename T>
void draw_rows(const at::Tensor& logits, const at::Tensor& u, double temperature, at::Tensor& tokens,
               at::Tensor& logprobs) {
  const int64_t rows = logits.size(0), v = logits.size(1), blocks = (v + kDrawBlock - 1) / kDrawBlock;
  const T* xp = logits.data_ptr<T>();
  const double* up = u.data_ptr<double>();
  int64_t* tp = tokens.data_ptr<int64_t>();
  float* lp = logprobs.data_ptr<float>();
  const float scale = static_cast<float>(1.0 / temperature);
  const bool unit = temperature == 1.0;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> cdf(blocks);
    float e[kDrawBlock];
    for (int64_t r = begin; r < end; ++r) {
      const T* x = xp + r * logits.stride(0);
      float m = -3.4e38f;
      for (int64_t i = 0; i < v; ++i) m = std::max(m, static_cast<float>(x[i]));
      double total = 0.0, total1 = 0.0;  // sampling mass; the mass at temperature 1 when they differ
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t n = std::min(kDrawBlock, v - b * kDrawBlock);
        block_exp(x + b * kDrawBlock, n, m, scale, e);
        float s = 0.f;
        for (int64_t i = 0; i < n; ++i) s += e[i];
        total += s;
        cdf[b] = total;
        if (!unit) {
          block_exp(x + b * kDrawBlock, n, m, 1.f, e);
          float s1 = 0.f;
          for (int64_t i = 0; i < n; ++i) s1 += e[i];
          total1 += s1;
        }
      }
      const double target = up[r] * total;
      // the first block whose cumulative mass exceeds the target (the last one if rounding says none)
      const int64_t b = std::min<int64_t>(std::upper_bound(cdf.begin(), cdf.end(), target) - cdf.begin(), blocks - 1);
      const int64_t n = std::min(kDrawBlock, v - b * kDrawBlock);
      block_exp(x + b * kDrawBlock, n, m, scale, e);
      const double rest = target - (b > 0 ? cdf[b - 1] : 0.0);
      double acc = 0.0;
      int64_t pick = -1, last = 0;  // last: the block's last token with mass (rounding fallback)
      for (int64_t i = 0; i < n; ++i) {
        if (e[i] > 0.f) last = i;
        acc += e[i];
        if (pick < 0 && acc > rest) pick = i;
      }
      const int64_t token = b * kDrawBlock + (pick < 0 ? last : pick);
      tp[r] = token;
      lp[r] = static_cast<float>(static_cast<double>(static_cast<float>(x[token]) - m) - std::log(unit ? total : total1));
    }
  });
}

std::tuple<at::Tensor, at::Tensor> draw(const at::Tensor& logits, const at::Tensor& u, double temperature) {
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) > 0 && logits.stride(1) == 1,
              "draw: logits must be (rows, vocab) with the vocabulary contiguous");
  TORCH_CHECK(u.scalar_type() == at::kDouble && u.dim() == 1 && u.size(0) == logits.size(0) && u.is_contiguous(),
              "draw: u must be float64 (rows,)");
  TORCH_CHECK(temperature > 0, "draw: temperature must be > 0 (argmax is not a draw), got ", temperature);
  at::Tensor tokens = at::empty({logits.size(0)}, logits.options().dtype(at::kLong));
  at::Tensor logprobs = at::empty({logits.size(0)}, logits.options().dtype(at::kFloat));
  if (logits.scalar_type() == at::kBFloat16) {
    draw_rows<c10::BFloat16>(logits, u, temperature, tokens, logprobs);
  } else {
    TORCH_CHECK(logits.scalar_type() == at::kFloat, "draw: float32 or bfloat16 logits, got ", logits.scalar_type());
    draw_rows<float>(logits, u, temperature, tokens, logprobs);
  }
  return {tokens, logprobs};
}

}  // namespace

TORCH_LIBRARY(tinyr1, m) {
  m.def("decode_attention(Tensor q, Tensor pk, Tensor pv, Tensor pbias, Tensor rk, Tensor rv, int length, "
        "Tensor group, Tensor slot) -> Tensor");
  m.def("rms_norm(Tensor x, Tensor w, float eps) -> Tensor");
  m.def("rotary_append(Tensor qkv, Tensor cos, Tensor sin, Tensor(a!) rk, Tensor(b!) rv, Tensor slot, int heads, "
        "int t) -> Tensor");
  m.def("silu_mul(Tensor y) -> Tensor");
  m.def("draw(Tensor logits, Tensor u, float temperature) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(tinyr1, CPU, m) {
  m.impl("decode_attention", &decode_attention);
  m.impl("rms_norm", &rms_norm);
  m.impl("rotary_append", &rotary_append);
  m.impl("silu_mul", &silu_mul);
  m.impl("draw", &draw);
}
