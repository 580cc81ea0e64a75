// Host shim: lets g++ compile engine/collatz_kernel.cu as plain C++17.
//
//   g++ -O2 -std=c++17 -DHAILSTONE_HOST_BUILD -include engine/gpu_host_shim.h
//       -x c++ -shared -fPIC -pthread engine/collatz_kernel.cu -o libhs_host.so
//
// CUDA keywords become ordinary C++, the intrinsics the kernel uses get
// portable definitions with CUDA's semantics, and hs_host::run_grid stands in
// for a launch: CUDA blocks run one after another (so __shared__ can be a
// function-local static), and the threads of a block either run in a loop
// (kernels without __syncthreads) or as real std::threads meeting at a
// barrier (kernels with it). Only the tests use this build; it is slow and
// faithful, not fast.
#pragma once

#ifndef HAILSTONE_HOST_BUILD
#error "gpu_host_shim.h is only for the host build (-DHAILSTONE_HOST_BUILD)"
#endif

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// Blocks run one at a time, so one static per kernel is exactly one block's
// shared memory; threads of that block see the same object.
#define __shared__ static

struct hs_dim3 {
    unsigned int x, y, z;
};

static thread_local hs_dim3 threadIdx{0, 0, 0};
static thread_local hs_dim3 blockIdx{0, 0, 0};
static hs_dim3 blockDim{1, 1, 1};
static hs_dim3 gridDim{1, 1, 1};

// CUDA: position of the least significant set bit, 1-based; 0 for 0.
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
// CUDA: leading zeros of a 64-bit value; 64 for 0.
static inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x));
}
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
static inline unsigned long long atomicAdd(unsigned long long* addr, unsigned long long v) {
    return __atomic_fetch_add(addr, v, __ATOMIC_RELAXED);
}
static inline unsigned long long atomicMax(unsigned long long* addr, unsigned long long v) {
    unsigned long long old = __atomic_load_n(addr, __ATOMIC_RELAXED);
    while (old < v &&
           !__atomic_compare_exchange_n(addr, &old, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}

namespace hs_host {

// A reusable barrier for the threads of one block (C++17 has no std::barrier).
class Barrier {
  public:
    explicit Barrier(unsigned int count) : count_(count) {}
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const unsigned long long gen = generation_;
        if (++arrived_ == count_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return generation_ != gen; });
        }
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    unsigned int count_;
    unsigned int arrived_ = 0;
    unsigned long long generation_ = 0;
};

static Barrier* current_barrier = nullptr;

// Runs `kernel` once per thread of a grid x block launch.
inline void run_grid(hs_dim3 grid, hs_dim3 block, bool synchronizing,
                     const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    const unsigned int threads = block.x * block.y * block.z;
    for (unsigned int bz = 0; bz < grid.z; ++bz)
        for (unsigned int by = 0; by < grid.y; ++by)
            for (unsigned int bx = 0; bx < grid.x; ++bx) {
                const hs_dim3 b{bx, by, bz};
                auto one = [&](unsigned int linear) {
                    blockIdx = b;
                    threadIdx = hs_dim3{linear % block.x, (linear / block.x) % block.y,
                                        linear / (block.x * block.y)};
                    kernel();
                };
                if (!synchronizing || threads == 1) {
                    // A lone thread may pass its barrier; looped threads may not
                    // meet at one at all (__syncthreads aborts below).
                    Barrier solo(1);
                    current_barrier = threads == 1 ? &solo : nullptr;
                    for (unsigned int t = 0; t < threads; ++t) one(t);
                    current_barrier = nullptr;
                } else {
                    Barrier barrier(threads);
                    current_barrier = &barrier;
                    std::vector<std::thread> pool;
                    pool.reserve(threads);
                    for (unsigned int t = 0; t < threads; ++t) pool.emplace_back(one, t);
                    for (auto& th : pool) th.join();
                    current_barrier = nullptr;
                }
            }
}

}  // namespace hs_host

static inline void __syncthreads() {
    if (hs_host::current_barrier == nullptr) {
        // A kernel with __syncthreads was run with synchronizing=false.
        std::fputs("gpu_host_shim: __syncthreads in a non-synchronizing launch\n", stderr);
        std::abort();
    }
    hs_host::current_barrier->wait();
}
