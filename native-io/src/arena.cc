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

Napi::Value AllocShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  double phys = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(page);
  size_t bytes = static_cast<size_t>(IntegerArg(info, 0, "bytes", 1, phys, "the physical memory"));
  bool huge_pages = true;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsBoolean()) ThrowTypeError(env, "The \"hugePages\" argument must be of type boolean.");
    huge_pages = info[1].As<Napi::Boolean>().Value();
  }

  Mapping m{};
  bool ok = huge_pages && (TryHugeTlb(bytes, &m) || TryThp(bytes, page, &m));
  if (!ok) {
    size_t len = RoundUp(bytes, page);
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      ThrowErrno(env, errno, "mmap",
                 "allocShared could not map " + std::to_string(bytes) + " bytes of memory for a shared arena");
    }
    m = {p, len, ArenaPath::kNormal};
  }

  auto* mapping = new Mapping(m);
  std::shared_ptr<v8::BackingStore> store =
      v8::SharedArrayBuffer::NewBackingStore(m.base, bytes, ReleaseMapping, mapping);
  CounterFor(m.path).fetch_add(m.mapped_bytes, std::memory_order_relaxed);
  v8::Isolate* isolate = v8::Isolate::GetCurrent();
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(isolate, store);
  // node's N-API hands out a napi_value as the address of a V8 handle slot
  // (v8impl::JsValueFromV8LocalValue); this is the same conversion, inside the
  // HandleScope that N-API opened for this call.
  napi_value buffer = reinterpret_cast<napi_value>(*sab);

  Napi::Object result = Napi::Object::New(env);
  result.Set("buffer", Napi::Value(env, buffer));
  result.Set("path", Napi::String::New(env, PathName(m.path)));
  result.Set("bytes", Napi::Number::New(env, static_cast<double>(m.mapped_bytes)));
  return result;
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
  exports.Set("arenaStats", Napi::Function::New(env, ArenaStats, "arenaStats"));
}

}  // namespace c10m
