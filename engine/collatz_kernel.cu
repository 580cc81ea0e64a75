// Hailstone GPU kernels: the fast path of engine/cpu.py on CUDA, 128-bit exact.
//
// u128 is unsigned __int128 where the compiler has it in device code (NVRTC
// on Linux with --device-int128), else two 64-bit limbs (-DHS_PORTABLE_U128);
// the kernels read the same either way.
//
// One launch covers E evidence blocks (gridDim.y = E). The CUDA blocks of
// row e run a grid-stride loop over the survivor "slots" of evidence block e:
// slot t is survivor index g = i0 + t, i.e. period g / S and residue
// residues[g % S], so n = base + (g / S) * 2^k + residues[g % S] and the
// slots of a block are exactly its n = r (mod 2^k) for sieve survivors r, in
// increasing order. A slot is tested when n mod 9 is in MOD9_KEPT (a bit mask
// passed in by the host, so the constants stay in engine/params.py).
//
// Each tested n is iterated with (3x+1) / 2^ctz until it falls below n. A
// number is deferred to the host's exact path when its next 3x+1 would pass
// 2^128 or when it reaches the step bound; a deferred number contributes
// nothing here but its slot in the deferred list (its partial peak is
// dropped, because the exact path may find it a candidate, and candidates
// never count toward the block's maximum).
//
// The k-step jump (engine/sieve.py) replaces the first k shortcut steps of
// n = a*2^k + r by x = a*3^c + d. It hides the 3x+1 values met on the way,
// so it is taken only when their bound 3*(a*amax + bmax) + 1 is strictly
// below a peak this thread already saw in the same evidence block: then no
// hidden value can be the block's maximum, nor even tie with it. Strict,
// because ties go to the smallest n and a peak seen elsewhere may belong to
// a larger n; the exact comparison costs nothing measurable.
//
// Kernel 1 (hs_glide) writes one 8-word record per thread:
//   tested, odd_steps, deferred, max_hi, max_lo, maxn_hi, maxn_lo, jumps
// kernel 2 (hs_reduce) folds the records of each evidence block into one
// record of the same shape (sums, and the max with the smallest n on ties).
// Only E records and the short deferred list go back to the host.
//
// The same file builds as C++ on the host (g++ -DHAILSTONE_HOST_BUILD
// -include engine/gpu_host_shim.h) for the CPU-only tests; the host entry
// point at the bottom exists only in that build. No #include: NVRTC has no
// standard headers.

typedef unsigned long long u64;
typedef unsigned int u32;

#ifndef HS_PORTABLE_U128
typedef unsigned __int128 u128;
#else
// The same 128-bit arithmetic on two 64-bit limbs, for compilers without a
// 128-bit integer in device code: NVRTC accepts unsigned __int128 only on
// Linux and only with --device-int128, so on Windows the backend compiles
// with -DHS_PORTABLE_U128. Only the operations the kernels use, all modulo
// 2^128 exactly like unsigned __int128 (the tests run both builds).
struct u128 {
    u64 lo, hi;
    u128() = default;  // trivial, so __shared__ arrays of u128 are allowed
    __device__ __forceinline__ u128(u64 v) : lo(v), hi(0ull) {}
    __device__ __forceinline__ explicit operator u64() const { return lo; }
};

static __device__ __forceinline__ u128 hs_make(u64 hi, u64 lo) {
    u128 r;
    r.lo = lo;
    r.hi = hi;
    return r;
}
static __device__ __forceinline__ u128 operator+(u128 a, u128 b) {
    const u64 lo = a.lo + b.lo;
    return hs_make(a.hi + b.hi + (lo < a.lo ? 1ull : 0ull), lo);
}
// a * b mod 2^128 for a 64-bit a (the kernels multiply by 3).
static __device__ __forceinline__ u128 operator*(u64 a, u128 b) {
    return hs_make(a * b.hi + __umul64hi(a, b.lo), a * b.lo);
}
static __device__ __forceinline__ u128 operator|(u128 a, u128 b) {
    return hs_make(a.hi | b.hi, a.lo | b.lo);
}
// Shifts by 0..127, as for unsigned __int128 (64-bit shifts by 64 are undefined).
static __device__ __forceinline__ u128 operator<<(u128 x, u32 s) {
    if (s == 0u) return x;
    if (s >= 64u) return hs_make(x.lo << (s - 64u), 0ull);
    return hs_make((x.hi << s) | (x.lo >> (64u - s)), x.lo << s);
}
static __device__ __forceinline__ u128 operator>>(u128 x, u32 s) {
    if (s == 0u) return x;
    if (s >= 64u) return hs_make(0ull, x.hi >> (s - 64u));
    return hs_make(x.hi >> s, (x.lo >> s) | (x.hi << (64u - s)));
}
static __device__ __forceinline__ bool operator==(u128 a, u128 b) {
    return a.hi == b.hi && a.lo == b.lo;
}
static __device__ __forceinline__ bool operator!=(u128 a, u128 b) { return !(a == b); }
static __device__ __forceinline__ bool operator<(u128 a, u128 b) {
    return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo);
}
static __device__ __forceinline__ bool operator>(u128 a, u128 b) { return b < a; }
#endif

#define HS_NO_JUMP 255u
#define HS_RECORD_WORDS 8
#define HS_DEFER_WORDS 3
// Threads per block of hs_reduce (a power of two; the shared arrays below).
#define HS_REDUCE_THREADS 256

// x >> ctz(x) for x != 0.
static __device__ __forceinline__ u128 hs_strip_twos(u128 x) {
    u64 lo = (u64)x;
    if (lo != 0ull) {
        int s = __ffsll((long long)lo) - 1;
        return x >> s;
    }
    u64 hi = (u64)(x >> 64);
    int s = __ffsll((long long)hi) - 1;
    return (u128)(hi >> s);
}

static __device__ __forceinline__ u128 hs_mul_add(u64 a, u64 b, u64 c) {
    // a*b + c < 2^128 always; __umul64hi keeps the product in two limbs
    // without a 128x128 multiply.
    u64 lo = a * b;
    u64 hi = __umul64hi(a, b);
    u64 sum = lo + c;
    hi += (sum < lo) ? 1ull : 0ull;
    return ((u128)hi << 64) | sum;
}

// True if (v, n) beats (best, best_n) under the protocol's tie rule.
static __device__ __forceinline__ bool hs_better(u128 v, u128 n, u128 best, u128 best_n) {
    return v > best || (v == best && v != 0 && n < best_n);
}

extern "C" __global__ void hs_glide(
    const u32* __restrict__ residues,
    const unsigned char* __restrict__ jump_c,
    const u64* __restrict__ jump_d,
    const unsigned char* __restrict__ amax_c,
    const unsigned char* __restrict__ amax_j,
    const u64* __restrict__ pow3,
    u64 survivors,       // S = len(residues)
    u32 k,
    u64 bmax,
    u32 step_bound,
    u32 pow2k_mod9,      // 2^k mod 9
    u32 kept9_mask,      // bit j set: n = j (mod 9) is tested
    const u64* __restrict__ blocks,  // E x 6: base_hi, base_lo, i0, slots, base mod 9, 0
    u64* __restrict__ records,       // E x (gridDim.x * blockDim.x) x 8
    u64* __restrict__ deferred,      // defer_cap x 3: n_hi, n_lo, e
    u64* __restrict__ defer_count,   // one counter; may exceed defer_cap
    u64 defer_cap)
{
    const u32 e = blockIdx.y;
    const u64 tid = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    const u64 stride = (u64)gridDim.x * blockDim.x;
    const u64* blk = blocks + (u64)e * 6;
    const u128 base = ((u128)blk[0] << 64) | blk[1];
    const u64 i0 = blk[2];
    const u64 slots = blk[3];
    const u32 base9 = (u32)blk[4];
    // (2^128 - 2) / 3: above it, 3x+1 no longer fits in 128 bits.
    const u128 lim = ((u128)0x5555555555555555ull << 64) | 0x5555555555555554ull;

    u64 tested = 0, odd_total = 0, n_def = 0, jumps = 0;
    u128 tmax = 0, tmax_n = 0;

    for (u64 t = tid; t < slots; t += stride) {
        const u64 g = i0 + t;
        u64 per, idx;
        if (g < survivors) {  // the common case: the block lies in one period
            per = 0;
            idx = g;
        } else {
            per = g / survivors;
            idx = g - per * survivors;
        }
        const u32 r = residues[idx];
        const u32 m9 = (base9 + (u32)(per % 9ull) * pow2k_mod9 + r % 9u) % 9u;
        if (((kept9_mask >> m9) & 1u) == 0u) continue;
        const u128 n = base + ((u128)per << k) + r;

        u128 x = n;
        u32 steps = 0;
        const u32 c = jump_c[idx];
        if (c != HS_NO_JUMP && tmax != 0 && (u64)(n >> 64) >> k == 0ull) {
            const u64 a = (u64)(n >> k);
            const u64 coef = pow3[amax_c[idx]] << (k - amax_j[idx]);
            const u128 bound = 3 * hs_mul_add(a, coef, bmax) + 1;
            if (bound < tmax) {
                x = hs_mul_add(a, pow3[c], jump_d[idx]);
                steps = c;
                ++jumps;
            }
        }
        u128 peak = 0;
        bool defer = false;
        for (;;) {
            x = hs_strip_twos(x);
            if (x < n) break;
            if (steps >= step_bound || x > lim) {
                defer = true;
                break;
            }
            x = 3 * x + 1;
            ++steps;
            if (x > peak) peak = x;
        }
        if (defer) {
            const u64 slot = atomicAdd(defer_count, 1ull);
            if (slot < defer_cap) {
                deferred[slot * HS_DEFER_WORDS + 0] = (u64)(n >> 64);
                deferred[slot * HS_DEFER_WORDS + 1] = (u64)n;
                deferred[slot * HS_DEFER_WORDS + 2] = e;
            }
            ++n_def;
            continue;
        }
        ++tested;
        odd_total += steps;
        if (hs_better(peak, n, tmax, tmax_n)) {
            tmax = peak;
            tmax_n = n;
        }
    }
    u64* rec = records + ((u64)e * stride + tid) * HS_RECORD_WORDS;
    rec[0] = tested;
    rec[1] = odd_total;
    rec[2] = n_def;
    rec[3] = (u64)(tmax >> 64);
    rec[4] = (u64)tmax;
    rec[5] = (u64)(tmax_n >> 64);
    rec[6] = (u64)tmax_n;
    rec[7] = jumps;
}

// One CUDA block per evidence block (gridDim.x = E, blockDim.x a power of
// two <= HS_REDUCE_THREADS): folds `per_block` thread records into one.
extern "C" __global__ void hs_reduce(const u64* __restrict__ records, u64 per_block,
                                     u64* __restrict__ out)
{
    __shared__ u64 s_sum[4][HS_REDUCE_THREADS];
    __shared__ u128 s_max[HS_REDUCE_THREADS];
    __shared__ u128 s_n[HS_REDUCE_THREADS];
    const u32 e = blockIdx.x;
    const u32 t = threadIdx.x;
    u64 a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    u128 best = 0, best_n = 0;
    for (u64 j = t; j < per_block; j += blockDim.x) {
        const u64* rec = records + ((u64)e * per_block + j) * HS_RECORD_WORDS;
        a0 += rec[0];
        a1 += rec[1];
        a2 += rec[2];
        a3 += rec[7];
        const u128 v = ((u128)rec[3] << 64) | rec[4];
        const u128 n = ((u128)rec[5] << 64) | rec[6];
        if (hs_better(v, n, best, best_n)) {
            best = v;
            best_n = n;
        }
    }
    s_sum[0][t] = a0;
    s_sum[1][t] = a1;
    s_sum[2][t] = a2;
    s_sum[3][t] = a3;
    s_max[t] = best;
    s_n[t] = best_n;
    __syncthreads();
    for (u32 half = blockDim.x / 2; half > 0; half >>= 1) {
        if (t < half) {
            s_sum[0][t] += s_sum[0][t + half];
            s_sum[1][t] += s_sum[1][t + half];
            s_sum[2][t] += s_sum[2][t + half];
            s_sum[3][t] += s_sum[3][t + half];
            if (hs_better(s_max[t + half], s_n[t + half], s_max[t], s_n[t])) {
                s_max[t] = s_max[t + half];
                s_n[t] = s_n[t + half];
            }
        }
        __syncthreads();
    }
    if (t == 0) {
        u64* o = out + (u64)e * HS_RECORD_WORDS;
        o[0] = s_sum[0][0];
        o[1] = s_sum[1][0];
        o[2] = s_sum[2][0];
        o[3] = (u64)(s_max[0] >> 64);
        o[4] = (u64)s_max[0];
        o[5] = (u64)(s_n[0] >> 64);
        o[6] = (u64)s_n[0];
        o[7] = s_sum[3][0];
    }
}

#ifdef HAILSTONE_HOST_BUILD
// Host stand-in for one launch pair (hs_glide over a gx x E grid of `tpb`
// threads, then hs_reduce with `reduce_threads`), with the same arguments the
// GPU backend passes. Returns 0, or -1 for a bad geometry.
extern "C" int hs_host_launch(
    const u32* residues, const unsigned char* jump_c, const u64* jump_d,
    const unsigned char* amax_c, const unsigned char* amax_j, const u64* pow3,
    u64 survivors, u32 k, u64 bmax, u32 step_bound, u32 pow2k_mod9, u32 kept9_mask,
    const u64* blocks, u32 n_blocks, u32 gx, u32 tpb, u64* records, u64* deferred,
    u64* defer_count, u64 defer_cap, u32 reduce_threads, u64* out)
{
    if (n_blocks == 0 || gx == 0 || tpb == 0 || reduce_threads == 0 ||
        reduce_threads > HS_REDUCE_THREADS || (reduce_threads & (reduce_threads - 1)) != 0) {
        return -1;
    }
    hs_host::run_grid(hs_dim3{gx, n_blocks, 1}, hs_dim3{tpb, 1, 1}, false, [&] {
        hs_glide(residues, jump_c, jump_d, amax_c, amax_j, pow3, survivors, k, bmax,
                 step_bound, pow2k_mod9, kept9_mask, blocks, records, deferred, defer_count,
                 defer_cap);
    });
    const u64 per_block = (u64)gx * tpb;
    hs_host::run_grid(hs_dim3{n_blocks, 1, 1}, hs_dim3{reduce_threads, 1, 1}, true, [&] {
        hs_reduce(records, per_block, out);
    });
    return 0;
}
#endif
