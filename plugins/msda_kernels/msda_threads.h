// A minimal parallel loop over [0, total) in chunks, on std::thread workers.
#pragma once

#include <algorithm>
#include <atomic>
#include <exception>
#include <thread>
#include <vector>

namespace detrt {
namespace msda {

// Number of workers for `requested` (<= 0: hardware concurrency), at most one per chunk.
inline int worker_count(int requested, long long total, long long chunk) {
  const long long chunks = (total + chunk - 1) / chunk;
  const int hardware = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const long long wanted = requested > 0 ? requested : hardware;
  return static_cast<int>(std::max(1LL, std::min(wanted, chunks)));
}

// Calls body(begin, end, worker) for consecutive chunks of [0, total); worker is in
// [0, workers). The calling thread is worker 0; when a thread cannot start, the threads
// that did start run its chunks.
template <typename Body>
void parallel_for(long long total, long long chunk, int workers, const Body& body) {
  std::atomic<long long> next{0};
  const auto run = [&](int worker) {
    for (long long begin = next.fetch_add(chunk); begin < total; begin = next.fetch_add(chunk)) {
      body(begin, std::min(total, begin + chunk), worker);
    }
  };
  std::vector<std::thread> threads;
  try {
    threads.reserve(static_cast<size_t>(workers - 1));
    for (int worker = 1; worker < workers; ++worker) {
      threads.emplace_back(run, worker);
    }
  } catch (const std::exception&) {  // std::system_error or std::bad_alloc: fewer workers
  }
  run(0);
  for (std::thread& thread : threads) {
    thread.join();
  }
}

}  // namespace msda
}  // namespace detrt
