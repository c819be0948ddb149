/*
 * cnn_cuda_emu.h -- the CUDA that cnn_cuda.cu uses, on the CPU, so that its
 * kernels run in the tests of every machine: the Makefile compiles the same
 * cnn_cuda.cu as host C++20 with -DCNN_CUDA_EMU into the test binary only
 * (cnn_cuda_emu_backend()). A correctness tool, not a backend anyone picks:
 * it runs about a thousand times slower than the CPU backend.
 *
 * What it models, and how honestly:
 * - A launch (CNN_LAUNCH, which the real build turns into <<<...>>>) runs
 *   its blocks one after another, x fastest. Each CUDA thread of a block is
 *   a thread of a pool (OS threads, kept for later launches), so the
 *   threads of a block really run at once; __syncthreads is a barrier of
 *   them that also checks they all reached the same one: a thread at the
 *   end of the kernel while another waits at a __syncthreads, or two
 *   __syncthreads of different lines, abort naming kernel, block, threads.
 * - Kernel arguments are converted and copied at the launch, as a device
 *   does; a pointer argument that is not NULL and not inside a cudaMalloc
 *   allocation (host memory) aborts.
 * - __shared__ is static storage, used by one block at a time; it keeps
 *   what the previous block left where a device gives undefined contents.
 *   __constant__ and __device__ variables are plain globals (the real build
 *   checks that kernels do not write constants).
 * - No warp intrinsics (__shfl*, __ballot*, __any*, ...), no atomics, no
 *   dynamic shared memory: cnn_cuda.cu uses none, and a kernel that does
 *   will not compile here until this file gives it a faithful version.
 * - Streams: launches, cudaMemcpyAsync and cudaMemset go into one queue in
 *   issue order; cudaStreamSynchronize, cudaDeviceSynchronize, cudaMemcpy,
 *   cudaMemcpyToSymbol, cudaFree and cudaStreamDestroy run it first. A
 *   result read on the host before a synchronisation is therefore stale, as
 *   on a device; one queue serialises all streams, so a race between two
 *   streams cannot show.
 * - cudaMalloc is malloc filled with 0xff bytes (NaN floats, -1 integers),
 *   so what no kernel wrote shows up; copies check their direction and that
 *   each device range lies inside one allocation (cudaErrorInvalidValue,
 *   cudaErrorInvalidMemcpyDirection).
 * - Under SANITIZE=address,undefined the kernels' indexing is checked
 *   (ASan on the allocations and globals, UBSan's bounds on the arrays).
 * What it cannot show: speed, the device's memory model (caches, weak
 * ordering between blocks, coalescing), warp scheduling, register and
 * shared-memory limits, the device's float rounding (fused multiply-adds).
 */
#ifndef PK_CNN_CUDA_EMU_H
#define PK_CNN_CUDA_EMU_H

#include <math.h> /* the device's expf, logf, ... */
#include <pthread.h>

#include <barrier>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__
#define __shared__ static

namespace cnn_emu {

struct uint3 { unsigned x, y, z; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDevice = 101,
};
enum cudaMemcpyKind {
  cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
  cudaMemcpyDeviceToDevice, cudaMemcpyDefault
};
struct CUstream_st { int unused; };
typedef CUstream_st *cudaStream_t;
struct cudaDeviceProp { char name[256]; int major, minor; };

inline const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
  }
  return "unknown error";
}

[[noreturn]] inline void die(const char *what) {
  fprintf(stderr, "cuda emulation: %s\n", what);
  abort();
}

/* ---- the thread pool: blocks one after another, a barrier per block ---- */
inline thread_local uint3 t_thread, t_block;
inline thread_local int t_tid = -1; /* the pool thread's number, -1 elsewhere */
inline dim3 g_block, g_grid;         /* of the running launch */

class pool {
 public:
  /* Runs body on blockDim threads for each block of the grid in turn. */
  void run(const char *name, dim3 grid, dim3 block, const std::function<void()> &body) {
    unsigned n = block.x * block.y * block.z;
    std::unique_lock<std::mutex> lk(mu_);
    while (th_.size() < n) {
      pthread_t t;
      pthread_attr_t at;
      pthread_attr_init(&at);
      pthread_attr_setstacksize(&at, 2u << 20);
      args_.push_back({this, (int)th_.size()});
      if (pthread_create(&t, &at, main, &args_.back()) != 0) die("cannot start a pool thread");
      pthread_attr_destroy(&at);
      th_.push_back(t);
    }
    name_ = name;
    body_ = &body;
    n_ = n;
    g_grid = grid;
    g_block = block;
    site_.assign(n, 0);
    bar_ = std::make_unique<std::barrier<check>>((std::ptrdiff_t)n, check{this});
    busy_ = n;
    gen_++;
    go_.notify_all();
    done_.wait(lk, [this] { return busy_ == 0; });
    bar_.reset();
  }

  /* __syncthreads(): wait for the block's other threads at this line. */
  void sync(int line) {
    if (t_tid < 0) die("__syncthreads outside a kernel");
    site_[(size_t)t_tid] = line;
    bar_->arrive_and_wait();
  }

  ~pool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_ = true;
      go_.notify_all();
    }
    for (pthread_t t : th_) pthread_join(t, nullptr);
  }

 private:
  struct arg { pool *p; int tid; };
  /* Runs once per barrier phase, before any thread goes on. */
  struct check {
    pool *p;
    void operator()() noexcept {
      const std::vector<int> &s = p->site_;
      for (size_t t = 1; t < s.size(); t++)
        if (s[t] != s[0]) {
          char a[48], b[48];
          where(a, sizeof a, s[0]);
          where(b, sizeof b, s[t]);
          fprintf(stderr,
                  "cuda emulation: %s, block (%u,%u,%u): thread 0 is at %s but thread %zu at %s;"
                  " every thread of a block must reach the same __syncthreads\n",
                  p->name_, t_block.x, t_block.y, t_block.z, a, t, b);
          abort();
        }
    }
    static void where(char *buf, size_t cap, int line) {
      if (line) snprintf(buf, cap, "__syncthreads (line %d)", line);
      else snprintf(buf, cap, "the end of the kernel");
    }
  };

  static void *main(void *a) {
    arg *x = (arg *)a;
    x->p->work(x->tid);
    return nullptr;
  }

  void work(int tid) {
    unsigned long seen = 0;
    t_tid = tid;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        go_.wait(lk, [&] { return quit_ || gen_ != seen; });
        if (quit_) return;
        seen = gen_;
        if ((unsigned)tid >= n_) continue;
      }
      dim3 b = g_block, g = g_grid;
      t_thread = {tid % b.x, tid / b.x % b.y, tid / (b.x * b.y)};
      for (unsigned z = 0; z < g.z; z++)
        for (unsigned y = 0; y < g.y; y++)
          for (unsigned x = 0; x < g.x; x++) {
            t_block = {x, y, z};
            (*body_)();
            sync(0); /* the end of the block */
          }
      std::lock_guard<std::mutex> lk(mu_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable go_, done_;
  std::vector<pthread_t> th_;
  std::deque<arg> args_; /* stable addresses */
  unsigned long gen_ = 0;
  unsigned busy_ = 0, n_ = 0;
  bool quit_ = false;
  const char *name_ = "";
  const std::function<void()> *body_ = nullptr;
  std::vector<int> site_;
  std::unique_ptr<std::barrier<check>> bar_;
};

inline pool &the_pool() {
  static pool p;
  return p;
}

/* ---- device memory and the one queue ------------------------------------ */
struct device {
  std::mutex mu;
  std::map<const char *, size_t> allocs; /* base -> bytes */
  std::deque<std::function<void()>> queue;
};
inline device &dev() {
  static device d;
  return d;
}
inline thread_local cudaError_t t_last = cudaSuccess;

/* 1 when [p, p+n) lies inside one allocation (n 0: p inside or at its end). */
inline bool on_device(const void *p, size_t n) {
  device &d = dev();
  std::lock_guard<std::mutex> lk(d.mu);
  const char *c = (const char *)p;
  auto it = d.allocs.upper_bound(c);
  if (it == d.allocs.begin()) return false;
  --it;
  return c >= it->first && (size_t)(c - it->first) + n <= it->second;
}

/* Runs what was queued, in order, on this thread. */
inline void drain() {
  device &d = dev();
  for (;;) {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> lk(d.mu);
      if (d.queue.empty()) return;
      f = std::move(d.queue.front());
      d.queue.pop_front();
    }
    f();
  }
}

inline void enqueue(std::function<void()> f) {
  device &d = dev();
  std::lock_guard<std::mutex> lk(d.mu);
  d.queue.push_back(std::move(f));
}

inline cudaError_t fail(cudaError_t e) { return t_last = e; }

template <class T> cudaError_t cudaMalloc(T **p, size_t n) {
  *p = nullptr;
  if (n == 0) return cudaSuccess;
  void *m = malloc(n);
  if (!m) return fail(cudaErrorMemoryAllocation);
  memset(m, 0xff, n);
  device &d = dev();
  std::lock_guard<std::mutex> lk(d.mu);
  d.allocs[(const char *)m] = n;
  *p = (T *)m;
  return cudaSuccess;
}

inline cudaError_t cudaFree(void *p) {
  if (!p) return cudaSuccess;
  drain();
  device &d = dev();
  std::lock_guard<std::mutex> lk(d.mu);
  if (!d.allocs.erase((const char *)p)) return fail(cudaErrorInvalidDevicePointer);
  free(p);
  return cudaSuccess;
}

template <class T> cudaError_t cudaMallocHost(T **p, size_t n) {
  *p = (T *)malloc(n ? n : 1);
  return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}
inline cudaError_t cudaFreeHost(void *p) {
  free(p);
  return cudaSuccess;
}

inline cudaError_t copy_check(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  if (n == 0 || k == cudaMemcpyDefault) return cudaSuccess;
  bool dd = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
  bool sd = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
  if (dd != on_device(dst, 0) || sd != on_device(src, 0)) return fail(cudaErrorInvalidMemcpyDirection);
  if ((dd && !on_device(dst, n)) || (sd && !on_device(src, n))) return fail(cudaErrorInvalidValue);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                                   cudaStream_t = nullptr) {
  cudaError_t e = copy_check(dst, src, n, k);
  if (e != cudaSuccess) return e;
  if (n) enqueue([=] { memcpy(dst, src, n); });
  return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
  cudaError_t e = copy_check(dst, src, n, k);
  if (e != cudaSuccess) return e;
  drain();
  if (n) memcpy(dst, src, n);
  return cudaSuccess;
}

inline cudaError_t cudaMemset(void *p, int v, size_t n) {
  if (n && !on_device(p, n)) return fail(cudaErrorInvalidValue);
  if (n) enqueue([=] { memset(p, v, n); });
  return cudaSuccess;
}

template <class T>
cudaError_t cudaMemcpyToSymbol(T &sym, const void *src, size_t n, size_t off = 0,
                               cudaMemcpyKind k = cudaMemcpyHostToDevice) {
  if (off > sizeof(T) || n > sizeof(T) - off || k != cudaMemcpyHostToDevice)
    return fail(cudaErrorInvalidValue);
  drain();
  memcpy((char *)&sym + off, src, n);
  return cudaSuccess;
}

inline cudaError_t cudaStreamCreate(cudaStream_t *s) {
  *s = new CUstream_st();
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  drain();
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
  drain();
  return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() {
  drain();
  return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
  cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return t_last; }

inline cudaError_t cudaGetDeviceCount(int *n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
  if (d != 0) return fail(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "CPU emulation of the CUDA kernels");
  return cudaSuccess;
}

/* ---- launches ----------------------------------------------------------- */
/* The argument as the kernel's parameter type, by implicit conversion. */
template <class T> T as_param(std::type_identity_t<T> v) { return v; }

template <class T> void check_arg(const char *name, size_t i, const T &v) {
  if constexpr (std::is_pointer_v<T>)
    if (v && !on_device(v, 0)) {
      fprintf(stderr, "cuda emulation: %s: argument %zu (%p) is not device memory\n", name, i + 1,
              (const void *)v);
      abort();
    }
}

template <class... P, class... A>
void launch(const char *name, dim3 grid, dim3 block, cudaStream_t, void (*k)(P...), A &&...a) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
  unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
  if (nt == 0 || nt > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 || !grid.x ||
      !grid.y || !grid.z || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu) {
    fail(cudaErrorInvalidConfiguration);
    return;
  }
  std::tuple<std::decay_t<P>...> args{as_param<P>(std::forward<A>(a))...};
  std::apply([&](const auto &...v) {
    size_t i = 0;
    (check_arg(name, i++, v), ...);
  }, args);
  enqueue([=] { the_pool().run(name, grid, block, [&] { std::apply(k, args); }); });
}

}  // namespace cnn_emu

using namespace cnn_emu;

#define threadIdx (static_cast<const cnn_emu::uint3 &>(cnn_emu::t_thread))
#define blockIdx (static_cast<const cnn_emu::uint3 &>(cnn_emu::t_block))
#define blockDim (static_cast<const cnn_emu::dim3 &>(cnn_emu::g_block))
#define gridDim (static_cast<const cnn_emu::dim3 &>(cnn_emu::g_grid))
#define __syncthreads() cnn_emu::the_pool().sync(__LINE__)
#define CNN_LAUNCH(k, grid, block, stream, ...) \
  cnn_emu::launch(#k, (grid), (block), (stream), k, __VA_ARGS__)

#endif
