// The ceilings the compare scripts divide by (their "fraction of limit" column), measured on
// this machine at a given thread count:
//   * bf16 peak: back-to-back AVX512-BF16 dot products (vdpbf16ps, 64 FLOP per zmm instruction)
//     on independent register accumulators, i.e. what the FMA ports can do with no memory traffic;
//   * f32 FMA peak: the same with vfmadd231ps (32 FLOP per zmm instruction). A bf16 matmul can run
//     on either unit (exact bf16 products, f32 sums), so its ceiling is the better of the two: on
//     some Xeons vdpbf16ps issues at a quarter of the FMA rate;
//   * int8 peak: the same with AVX512-VNNI vpdpbusd (128 int8 ops per zmm instruction), the
//     ceiling for W8A8 prefill and multi-stream decode;
//   * read bandwidth: every thread sums its slice of a buffer far larger than the caches, the
//     access pattern of a decode step streaming the weights (median of the passes).
// On an AVX2-only CPU the FMA peak uses 256-bit vfmadd231ps (16 FLOP each) and the int8 peak the
// exact vpmaddwd + vpaddd pair of the engine's AVX2 int8 tiles (16 products per pair).
// Where the build has AMX (`-march=native` on a CPU with AMX) and Linux grants the tile state,
// AMX-BF16 (tdpbf16ps, 16x16x32 bf16 products = 16384 FLOP x 2) and AMX-INT8 (tdpbusd, 16x16x64
// products) peaks are measured too, on four independent accumulator tiles; a bf16 matmul's ceiling
// is then the best of the three bf16-capable units, an int8 one's the better of VNNI and AMX.
// Peaks are the best of several repeats (the machine is shared). Prints one JSON object; a peak is 0
// on a CPU without the instructions (bf16: AVX512-BF16).
// Build: cc -O3 -march=native -fopenmp machine_limits.c -o machine_limits
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#ifdef __AVX512BF16__
// 12 independent chains in named registers hide the instruction latency; returns FLOPs done.
static double bf16_kernel(long iters, float *sink) {
    // Distinct start values, or the compiler folds the identical chains into one.
#define C(i) _mm512_set1_ps((float)(i))
    __m512 c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5);
    __m512 c6 = C(6), c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11);
#undef C
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in bf16
    __m512bh b = (__m512bh)_mm512_set1_epi16(0x3c00);  // 2^-7, keeps sums finite
    for (long n = 0; n < iters; n++) {
        c0 = _mm512_dpbf16_ps(c0, a, b), c1 = _mm512_dpbf16_ps(c1, a, b);
        c2 = _mm512_dpbf16_ps(c2, a, b), c3 = _mm512_dpbf16_ps(c3, a, b);
        c4 = _mm512_dpbf16_ps(c4, a, b), c5 = _mm512_dpbf16_ps(c5, a, b);
        c6 = _mm512_dpbf16_ps(c6, a, b), c7 = _mm512_dpbf16_ps(c7, a, b);
        c8 = _mm512_dpbf16_ps(c8, a, b), c9 = _mm512_dpbf16_ps(c9, a, b);
        c10 = _mm512_dpbf16_ps(c10, a, b), c11 = _mm512_dpbf16_ps(c11, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 12 * 64;  // 16 lanes x 2 bf16 pairs x (mul + add)
}
#endif

#ifdef __AVX512F__
// Same shape with vfmadd231ps: 16 lanes x (mul + add) = 32 FLOP per instruction.
static double fma_kernel(long iters, float *sink) {
#define C(i) _mm512_set1_ps(i * 1e-3f)
    __m512 c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5);
    __m512 c6 = C(6), c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11);
#undef C
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-4f);
    for (long n = 0; n < iters; n++) {
        c0 = _mm512_fmadd_ps(c0, a, b), c1 = _mm512_fmadd_ps(c1, a, b);
        c2 = _mm512_fmadd_ps(c2, a, b), c3 = _mm512_fmadd_ps(c3, a, b);
        c4 = _mm512_fmadd_ps(c4, a, b), c5 = _mm512_fmadd_ps(c5, a, b);
        c6 = _mm512_fmadd_ps(c6, a, b), c7 = _mm512_fmadd_ps(c7, a, b);
        c8 = _mm512_fmadd_ps(c8, a, b), c9 = _mm512_fmadd_ps(c9, a, b);
        c10 = _mm512_fmadd_ps(c10, a, b), c11 = _mm512_fmadd_ps(c11, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    *sink = _mm512_reduce_add_ps(s);
    return (double)iters * 12 * 32;
}
#elif defined(__AVX2__) && defined(__FMA__)
// AVX2: 8 lanes x (mul + add) = 16 FLOP per instruction.
static double fma_kernel(long iters, float *sink) {
#define C(i) _mm256_set1_ps(i * 1e-3f)
    __m256 c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5);
    __m256 c6 = C(6), c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11);
#undef C
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-4f);
    for (long n = 0; n < iters; n++) {
        c0 = _mm256_fmadd_ps(c0, a, b), c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b), c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b), c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b), c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b), c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b), c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float l[8];
    _mm256_storeu_ps(l, s);
    *sink = l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
    return (double)iters * 12 * 16;
}
#endif

#ifdef __AVX512VNNI__
// Same shape with vpdpbusd (u8 x s8, 4 products per 32-bit lane): 128 int8 ops per instruction.
static double int8_kernel(long iters, float *sink) {
#define C(i) _mm512_set1_epi32(i)
    __m512i c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5);
    __m512i c6 = C(6), c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11);
#undef C
    __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(1);
    for (long n = 0; n < iters; n++) {
        c0 = _mm512_dpbusd_epi32(c0, a, b), c1 = _mm512_dpbusd_epi32(c1, a, b);
        c2 = _mm512_dpbusd_epi32(c2, a, b), c3 = _mm512_dpbusd_epi32(c3, a, b);
        c4 = _mm512_dpbusd_epi32(c4, a, b), c5 = _mm512_dpbusd_epi32(c5, a, b);
        c6 = _mm512_dpbusd_epi32(c6, a, b), c7 = _mm512_dpbusd_epi32(c7, a, b);
        c8 = _mm512_dpbusd_epi32(c8, a, b), c9 = _mm512_dpbusd_epi32(c9, a, b);
        c10 = _mm512_dpbusd_epi32(c10, a, b), c11 = _mm512_dpbusd_epi32(c11, a, b);
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                 _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(c8, c9), _mm512_add_epi32(c10, c11)));
    *sink = (float)_mm512_reduce_add_epi32(s);
    return (double)iters * 12 * 128;  // 16 lanes x 4 products x (mul + add)
}
#elif defined(__AVX2__)
// AVX2 (no VNNI): vpmaddwd (16 i16 products summed in pairs) + vpaddd, as the engine's AVX2 int8
// tiles run it: 32 ops per pair.
static double int8_kernel(long iters, float *sink) {
#define C(i) _mm256_set1_epi32(i)
    __m256i c0 = C(0), c1 = C(1), c2 = C(2), c3 = C(3), c4 = C(4), c5 = C(5);
    __m256i c6 = C(6), c7 = C(7), c8 = C(8), c9 = C(9), c10 = C(10), c11 = C(11);
#undef C
    __m256i a = _mm256_set1_epi16(1), b = _mm256_set1_epi16(1);
#define M(c) c = _mm256_add_epi32(c, _mm256_madd_epi16(a, b))
    for (long n = 0; n < iters; n++) {
        // The products do not depend on the loop; keep the compiler from hoisting them.
        __asm__ volatile("" : "+x"(a), "+x"(b));
        M(c0), M(c1), M(c2), M(c3), M(c4), M(c5), M(c6), M(c7), M(c8), M(c9), M(c10), M(c11);
    }
#undef M
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3)),
                                 _mm256_add_epi32(_mm256_add_epi32(c4, c5), _mm256_add_epi32(c6, c7)));
    s = _mm256_add_epi32(s, _mm256_add_epi32(_mm256_add_epi32(c8, c9), _mm256_add_epi32(c10, c11)));
    int l[8];
    _mm256_storeu_si256((__m256i *)l, s);
    *sink = (float)(l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7]);
    return (double)iters * 12 * 32;  // 8 lanes x 2 products x (mul + add)
}
#endif

// Best rate (G ops/s) of `kernel` on `threads` threads over `reps` runs; 0 when the CPU (this
// build) lacks the instructions (`kernel` is NULL).
typedef double (*peak_kernel)(long iters, float *sink);
static double best_rate(peak_kernel kernel, int threads, int reps) {
    double best = 0;
    if (!kernel) return 0;
    omp_set_num_threads(threads);
    for (int r = 0; r < reps; r++) {
        double ops = 0, t = now();
        float sink = 0;
#pragma omp parallel reduction(+ : ops)
        { ops += kernel(20000000, &sink); }
        double g = ops / (now() - t) / 1e9;
        if (g > best) best = g;
        if (sink == 12345.f) puts("");  // keep the work
    }
    return best;
}

#ifndef __AVX512BF16__
#define bf16_kernel NULL
#endif
#if !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))
#define fma_kernel NULL
#endif
#if !defined(__AVX512VNNI__) && !defined(__AVX2__)
#define int8_kernel NULL
#endif

#if defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AMX_INT8__)
#include <sys/syscall.h>
#include <unistd.h>
// Linux hands out the AMX tile state per process on request (ARCH_REQ_XCOMP_PERM, XTILEDATA).
static int amx_permitted(void) { return syscall(SYS_arch_prctl, 0x1023, 18) == 0; }

// Palette 1: tiles 0-3 accumulate 16 rows x 64 bytes, tiles 4-7 are 16 x 64-byte operands.
static void amx_config(void) {
    uint8_t cfg[64] = {0};
    cfg[0] = 1;
    for (int t = 0; t < 8; t++) {
        cfg[16 + 2 * t] = 64;
        cfg[48 + t] = 16;
    }
    _tile_loadconfig(cfg);
}

// Zeroed accumulators 0-3 and operands 4-7 loaded from `a` (1 KiB), ready for the tile loop.
static void amx_start(const void *a) {
    amx_config();
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, a, 64); _tile_loadd(5, a, 64); _tile_loadd(6, a, 64); _tile_loadd(7, a, 64);
}

// Keeps accumulator 0 observable and hands the tile state back.
static void amx_finish(float *sink) {
    float c[16 * 16];
    _tile_stored(0, c, 64);
    _tile_release();
    *sink += c[0];
}

// One tile op does the work of 512 vector instructions: 16 x fewer iterations.
static double amx_bf16_kernel(long iters, float *sink) {
    static _Thread_local uint8_t a[1024];
    amx_start(a);
    iters /= 16;
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    amx_finish(sink);
    return (double)iters * 4 * 16 * 16 * 32 * 2;
}

static double amx_int8_kernel(long iters, float *sink) {
    static _Thread_local uint8_t a[1024];
    amx_start(a);
    iters /= 16;
    for (long i = 0; i < iters; i++) {
        _tile_dpbusd(0, 4, 6); _tile_dpbusd(1, 4, 7);
        _tile_dpbusd(2, 5, 6); _tile_dpbusd(3, 5, 7);
    }
    amx_finish(sink);
    return (double)iters * 4 * 16 * 16 * 64 * 2;
}
#else
static int amx_permitted(void) { return 0; }
#define amx_bf16_kernel NULL
#define amx_int8_kernel NULL
#endif

// On a shared machine the T-thread run rarely gets T idle cores, while a 1-thread run usually
// gets one; register-only work scales with cores, so T x the 1-thread rate is a fair ceiling.
// Also returns the two readings it took the better of.
static double scaled_peak(peak_kernel kernel, int threads, int reps, double *at_t, double *at_1) {
    *at_t = best_rate(kernel, threads, reps);
    *at_1 = best_rate(kernel, 1, reps);
    return *at_t > threads * *at_1 ? *at_t : threads * *at_1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Median, not best, of the passes: the host's memory bandwidth is shared with other guests and
// now and then a pass reads far faster (60 GB/s seen once, 37 GB/s typical at 2 threads).
static double read_bw(const uint64_t *buf, size_t n, int threads, int reps, uint64_t *check) {
    double g[64];
    if (reps > 64) reps = 64;
    omp_set_num_threads(threads);
    for (int r = 0; r < reps + 1; r++) {  // +1: the first pass only warms up
        double t = now();
        uint64_t s = 0;
#pragma omp parallel for schedule(static) reduction(+ : s)
        for (size_t i = 0; i < n; i++) s += buf[i];
        if (r > 0) g[r - 1] = n * sizeof(uint64_t) / (now() - t) / 1e9;
        *check += s;
    }
    qsort(g, reps, sizeof(double), cmp_double);
    return g[reps / 2];
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    size_t mib = argc > 2 ? (size_t)atol(argv[2]) : 1024;
    int reps = argc > 3 ? atoi(argv[3]) : 5;

    // Asked before any OpenMP thread exists: threads made earlier may not get the tile state
    // (ldtilecfg then faults there).
    int amx_ok = amx_permitted();
    double peak_t, peak_1, f_t, f_1, i8_t, i8_1, a_t, a_1;
    double peak = scaled_peak(bf16_kernel, threads, reps, &peak_t, &peak_1);
    double fma = scaled_peak(fma_kernel, threads, reps, &f_t, &f_1);
    double i8 = scaled_peak(int8_kernel, threads, reps, &i8_t, &i8_1);
    double amx = 0, amx8 = 0;
    if (amx_ok) {
        amx = scaled_peak(amx_bf16_kernel, threads, reps, &a_t, &a_1);
        amx8 = scaled_peak(amx_int8_kernel, threads, reps, &a_t, &a_1);
    }
    double mm = fma > peak ? fma : peak;
    if (amx > mm) mm = amx;

    // Huge pages: with 4 KiB pages the hardware prefetchers stop at every page boundary and a
    // single stream reads ~17 GB/s here instead of ~32 GB/s, which would understate the ceiling.
    size_t bytes = mib << 20, n = bytes / sizeof(uint64_t);
    uint64_t *buf = aligned_alloc(1 << 21, bytes);
    if (!buf) return 1;
    madvise(buf, bytes, MADV_HUGEPAGE);
    omp_set_num_threads(threads);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i;  // first touch by the reading thread
    uint64_t check = 0;
    double bw_t = read_bw(buf, n, threads, reps, &check), bw_1 = read_bw(buf, n, 1, reps, &check);
    free(buf);
    // Memory bandwidth does not scale with cores the way FLOPs do: take the better of the two.
    double bw = bw_t > bw_1 ? bw_t : bw_1;
    printf("{\"threads\": %d, \"bf16_peak_gflops\": %.1f, \"bf16_gflops_threads\": %.1f, "
           "\"bf16_gflops_1_thread\": %.1f, \"fma_f32_peak_gflops\": %.1f, "
           "\"bf16_matmul_peak_gflops\": %.1f, \"int8_peak_gops\": %.1f, \"int8_gops_threads\": %.1f, "
           "\"int8_gops_1_thread\": %.1f, \"read_bw_gbs\": %.1f, \"read_bw_gbs_threads\": %.1f, "
           "\"read_bw_gbs_1_thread\": %.1f, \"amx_bf16_peak_gflops\": %.1f, "
           "\"amx_int8_peak_gops\": %.1f, \"int8_matmul_peak_gops\": %.1f, \"buffer_mib\": %zu, "
           "\"checksum\": %llu}\n",
           threads, peak, peak_t, peak_1, fma, mm, i8, i8_t, i8_1, bw, bw_t, bw_1, amx, amx8,
           amx8 > i8 ? amx8 : i8, mib, (unsigned long long)check);
    return 0;
}
