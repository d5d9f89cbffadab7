// allocShared(bytes, hugePages) and arenaStats(): SharedArrayBuffers over our
// own mmap'd memory, backed by huge pages where the system has them.
//
// N-API cannot make a SharedArrayBuffer over external memory, so this one
// family talks to V8 directly: SharedArrayBuffer::NewBackingStore with a
// deleter that munmaps, then SharedArrayBuffer::New. The deleter runs once,
// when the last isolate (thread) holding the buffer lets go of it, on
// whichever thread that happens; it only munmaps and updates atomics.
#include <napi.h>
#include <sys/mman.h>
#include <unistd.h>
#include <v8.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "errors.h"
#include "procfs.h"

namespace c10m {
namespace {

enum class ArenaPath { kHugeTlb, kThp, kNormal };

// Process-wide on purpose: every worker thread's arenas count towards one
// figure for metrics. Bytes currently mapped, per path.
std::atomic<uint64_t> hugetlb_bytes{0};
std::atomic<uint64_t> thp_bytes{0};
std::atomic<uint64_t> normal_bytes{0};

std::atomic<uint64_t>& CounterFor(ArenaPath path) {
  switch (path) {
    case ArenaPath::kHugeTlb: return hugetlb_bytes;
    case ArenaPath::kThp: return thp_bytes;
    default: return normal_bytes;
  }
}

const char* PathName(ArenaPath path) {
  switch (path) {
    case ArenaPath::kHugeTlb: return "hugetlb";
    case ArenaPath::kThp: return "thp";
    default: return "normal";
  }
}

struct Mapping {
  void* base;
  size_t mapped_bytes;
  ArenaPath path;
};

void ReleaseMapping(void* /*data*/, size_t /*length*/, void* deleter_data) {
  auto* m = static_cast<Mapping*>(deleter_data);
  munmap(m->base, m->mapped_bytes);  // Nothing useful to do if it fails; it cannot for a range we mapped.
  CounterFor(m->path).fetch_sub(m->mapped_bytes, std::memory_order_relaxed);
  delete m;
}

size_t RoundUp(size_t n, size_t unit) { return (n + unit - 1) / unit * unit; }

// The default huge page size (what MAP_HUGETLB gives), 2 MiB when unknown.
size_t HugePageBytes() {
  int64_t v = MeminfoValue("Hugepagesize");
  return v > 0 ? static_cast<size_t>(v) : (2u << 20);
}

// True when transparent huge pages are "always" or "madvise"; madvise()
// itself succeeds even under "never", so it cannot tell us.
bool ThpAvailable() {
  std::string mode = ReadFirstLine("/sys/kernel/mm/transparent_hugepage/enabled");
  return mode.find("[always]") != std::string::npos || mode.find("[madvise]") != std::string::npos;
}

size_t ThpPmdBytes() {
  std::string v = ReadFirstLine("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size");
  long long n = std::strtoll(v.c_str(), nullptr, 10);
  return n > 0 ? static_cast<size_t>(n) : (2u << 20);
}

// MAP_HUGETLB reserves its pages at mmap time, so failure here (ENOMEM when
// vm.nr_hugepages has no room) is immediate, never a SIGBUS on first touch.
bool TryHugeTlb(size_t bytes, Mapping* out) {
  size_t len = RoundUp(bytes, HugePageBytes());
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  if (p == MAP_FAILED) return false;
  *out = {p, len, ArenaPath::kHugeTlb};
  return true;
}

// Transparent huge pages only cover whole, aligned PMD ranges, so a region
// smaller than one cannot get any; larger ones are aligned by over-mapping
// and trimming the ends.
bool TryThp(size_t bytes, size_t page, Mapping* out) {
  size_t pmd = ThpPmdBytes();
  if (bytes < pmd || !ThpAvailable()) return false;
  size_t len = RoundUp(bytes, page);
  void* raw = mmap(nullptr, len + pmd, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return false;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = RoundUp(start, pmd);
  size_t head = aligned - start;
  size_t tail = pmd - head;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + len), tail);
  void* p = reinterpret_cast<void*>(aligned);
  if (madvise(p, len, MADV_HUGEPAGE) != 0) {
    // Keep the mapping: it is good ordinary memory.
    *out = {p, len, ArenaPath::kNormal};
    return true;
  }
  *out = {p, len, ArenaPath::kThp};
  return true;
}

// Maps `bytes` of arena memory, best path first; false with errno when even
// ordinary pages cannot be mapped. Touches nothing in JS: safe on any thread.
bool MapArena(size_t bytes, bool huge_pages, Mapping* out, int* err) {
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (huge_pages && (TryHugeTlb(bytes, out) || TryThp(bytes, page, out))) return true;
  size_t len = RoundUp(bytes, page);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    *err = errno;
    return false;
  }
  *out = {p, len, ArenaPath::kNormal};
  return true;
}

// Faults every page of the mapping in for writing, so that the thread that
// later writes to it takes no page fault (and no huge-page zeroing) there.
// MADV_POPULATE_WRITE (Linux 5.14) keeps transparent huge pages whole; else
// one write per base page (the memory is zero already: writing zero keeps it).
void Prefault(const Mapping& m) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  if (madvise(m.base, m.mapped_bytes, MADV_POPULATE_WRITE) == 0) return;
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  volatile uint8_t* p = static_cast<volatile uint8_t*>(m.base);
  for (size_t off = 0; off < m.mapped_bytes; off += page) p[off] = 0;
}

// The SharedArrayBuffer over a mapping, and the {buffer, path, bytes} object
// JS gets. Takes ownership of the mapping (released with the buffer).
Napi::Object WrapArena(Napi::Env env, size_t bytes, const Mapping& m) {
  auto* mapping = new Mapping(m);
  std::shared_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(m.base, bytes, ReleaseMapping, mapping);
  CounterFor(m.path).fetch_add(m.mapped_bytes, std::memory_order_relaxed);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, store);
  // node's N-API hands out a napi_value as the address of a V8 handle slot
  // (v8impl::JsValueFromV8LocalValue); this is the same conversion, inside the
  // HandleScope that N-API opened for this call (or for the async completion).
  napi_value buffer = reinterpret_cast<napi_value>(*sab);

  Napi::Object result = Napi::Object::New(env);
  result.Set("buffer", Napi::Value(env, buffer));
  result.Set("path", Napi::String::New(env, PathName(m.path)));
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(m.mapped_bytes)));
  return result;
}

size_t BytesArg(const Napi::CallbackInfo& info) {
  double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  double phys = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * page;
  return static_cast<size_t>(IntegerArg(info, 0, "bytes", 1, phys, "the physical memory"));
}

bool HugePagesArg(const Napi::CallbackInfo& info) {
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsBoolean()) ThrowTypeError(info.Env(), "The \"hugePages\" argument must be of type boolean.");
    return info[1].As<Napi::Boolean>().Value();
  }
  return true;
}

Napi::Value AllocShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t bytes = BytesArg(info);
  bool huge_pages = HugePagesArg(info);
  Mapping m{};
  int err = 0;
  if (!MapArena(bytes, huge_pages, &m, &err)) {
    ThrowErrno(env, err, "mmap", "allocShared could not map " + std::to_string(bytes) + " bytes of memory for a shared arena");
  }
  return WrapArena(env, bytes, m);
}

// allocSharedAsync: the mapping and its page faults on a libuv pool thread,
// the SharedArrayBuffer made on the calling thread when they are done. For
// arenas needed soon but not now (the next cache segment): the caller's loop
// never waits for the kernel to map or zero the memory.
//
// A job may still be in flight when its thread ends (process.exit in a
// worker, worker.terminate(), an uncaught exception). Node then waits for the
// pool thread and runs the completion with JS execution disallowed, so a
// completion that touches JS gets a failed status, and a C++ exception out of
// it aborts the whole process. Hence raw N-API rather than Napi::AsyncWorker,
// and an async cleanup hook per job:
//  - the hook keeps the napi_env alive (and the environment's teardown
//    waiting) until the job's completion removes it;
//  - when the hook runs, the job is cancelled if it has not started, and
//    marked env_closing: its completion then only unmaps the memory;
//  - a completion never throws: every N-API status is checked, and a failure
//    (the environment stopping before our hook ran) drops the result.
// All state is in the job: nothing static (the addon loads once per thread).
struct AllocJob {
  napi_env env = nullptr;
  napi_async_work work = nullptr;
  napi_deferred deferred = nullptr;
  napi_async_cleanup_hook_handle hook = nullptr;
  size_t bytes = 0;
  bool huge_pages = true;
  Mapping m{};
  int err = 0;
  // Touched on the pool thread in Execute, read on the env's thread after it (uv orders them).
  bool mapped = false;
  // Set by the cleanup hook on the env's thread: the environment is going away.
  bool env_closing = false;
};

void AllocJobExecute(napi_env /*do not use: pool thread*/, void* data) {
  auto* job = static_cast<AllocJob*>(data);
  if (!MapArena(job->bytes, job->huge_pages, &job->m, &job->err)) return;
  job->mapped = true;
  Prefault(job->m);
}

// The rejection: an Error like ThrowErrno's; nothing on failure (the env is stopping).
bool RejectWithErrno(napi_env env, napi_deferred deferred, size_t bytes, int err) {
  std::string text = "allocSharedAsync could not map " + std::to_string(bytes) +
                     " bytes of memory for a shared arena (mmap: " + std::strerror(err) + ", " + ErrnoName(err) + ")";
  std::string code_text = ErrnoName(err);
  napi_value message, code, error, errno_value, syscall;
  if (napi_create_string_utf8(env, text.c_str(), text.size(), &message) != napi_ok) return false;
  if (napi_create_string_utf8(env, code_text.c_str(), code_text.size(), &code) != napi_ok) return false;
  if (napi_create_error(env, nullptr, message, &error) != napi_ok) return false;
  if (napi_create_int32(env, err, &errno_value) != napi_ok) return false;
  if (napi_create_string_utf8(env, "mmap", 4, &syscall) != napi_ok) return false;
  if (napi_set_named_property(env, error, "code", code) != napi_ok) return false;
  if (napi_set_named_property(env, error, "errno", errno_value) != napi_ok) return false;
  if (napi_set_named_property(env, error, "syscall", syscall) != napi_ok) return false;
  return napi_reject_deferred(env, deferred, error) == napi_ok;
}

// False once the environment can no longer run JS (it is stopping, our hook
// not yet run): setting a property is the cheapest call that then fails.
bool CanRunJs(napi_env env) {
  napi_value probe;
  return napi_create_object(env, &probe) == napi_ok && napi_set_named_property(env, probe, "p", probe) == napi_ok;
}

void AllocJobComplete(napi_env env, napi_status status, void* data) {
  std::unique_ptr<AllocJob> job(static_cast<AllocJob*>(data));
  if (status == napi_ok && !job->env_closing && CanRunJs(env)) {
    napi_handle_scope scope;
    if (napi_open_handle_scope(env, &scope) == napi_ok) {
      try {
        if (job->mapped) {
          // WrapArena owns the mapping from here (the buffer's deleter unmaps it), even if a later step fails.
          job->mapped = false;
          Napi::Object arena = WrapArena(Napi::Env(env), job->bytes, job->m);
          napi_resolve_deferred(env, job->deferred, arena);
        } else {
          RejectWithErrno(env, job->deferred, job->bytes, job->err);
        }
      } catch (...) {
        // The environment stopped before our hook ran: nobody is left to tell.
      }
      // Nothing of ours may stay pending: an exception left here would be reported in a dying thread.
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value ignored;
        napi_get_and_clear_last_exception(env, &ignored);
      }
      napi_close_handle_scope(env, scope);
    }
  }
  // Mapped but never handed to JS (cancelled, or the environment went away first).
  if (job->mapped) munmap(job->m.base, job->m.mapped_bytes);
  napi_delete_async_work(env, job->work);
  // Lets the environment's teardown go on, if it was waiting for us.
  if (job->hook != nullptr) napi_remove_async_cleanup_hook(job->hook);
}

// Runs on the env's thread when its environment is torn down with the job in flight.
void AllocJobCleanupHook(napi_async_cleanup_hook_handle /*handle*/, void* data) {
  auto* job = static_cast<AllocJob*>(data);
  job->env_closing = true;
  // Not started yet: never map it (the completion then sees napi_cancelled). Running: it finishes harmlessly.
  napi_cancel_async_work(job->env, job->work);
}

Napi::Value AllocSharedAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto job = std::make_unique<AllocJob>();
  job->env = env;
  job->bytes = BytesArg(info);
  job->huge_pages = HugePagesArg(info);
  napi_value promise, name;
  napi_status status = napi_create_promise(env, &job->deferred, &promise);
  if (status == napi_ok) status = napi_create_string_utf8(env, "c10m:allocSharedAsync", NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) status = napi_create_async_work(env, nullptr, name, AllocJobExecute, AllocJobComplete, job.get(), &job->work);
  if (status != napi_ok) NAPI_THROW(Napi::Error::New(env), Napi::Value());
  status = napi_add_async_cleanup_hook(env, AllocJobCleanupHook, job.get(), &job->hook);
  if (status == napi_ok) status = napi_queue_async_work(env, job->work);
  if (status != napi_ok) {
    if (job->hook != nullptr) napi_remove_async_cleanup_hook(job->hook);
    napi_delete_async_work(env, job->work);
    NAPI_THROW(Napi::Error::New(env), Napi::Value());
  }
  job.release();  // The completion owns it now.
  return Napi::Value(env, promise);
}

Napi::Value ArenaStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object stats = Napi::Object::New(env);
  stats.Set("hugetlbBytes", Napi::Number::New(env, static_cast<double>(hugetlb_bytes.load())));
  stats.Set("thpBytes", Napi::Number::New(env, static_cast<double>(thp_bytes.load())));
  stats.Set("normalBytes", Napi::Number::New(env, static_cast<double>(normal_bytes.load())));
  stats.Set("jsBytes", Napi::Number::New(env, 0));
  return stats;
}

}  // namespace

void InitArena(Napi::Env env, Napi::Object exports) {
  exports.Set("allocShared", Napi::Function::New(env, AllocShared, "allocShared"));
  exports.Set("allocSharedAsync", Napi::Function::New(env, AllocSharedAsync, "allocSharedAsync"));
  exports.Set("arenaStats", Napi::Function::New(env, ArenaStats, "arenaStats"));
}

}  // namespace c10m
