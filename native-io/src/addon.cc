// The c10m_native addon: registers each function family. It is loaded once
// per worker thread; the families keep no per-load state (the arena byte
// counters are process-wide atomics on purpose).
#include <napi.h>

namespace c10m {
void InitArena(Napi::Env env, Napi::Object exports);
void InitReuseport(Napi::Env env, Napi::Object exports);
void InitLimits(Napi::Env env, Napi::Object exports);
}  // namespace c10m

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  c10m::InitArena(env, exports);
  c10m::InitReuseport(env, exports);
  c10m::InitLimits(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(c10m_native, Init)
