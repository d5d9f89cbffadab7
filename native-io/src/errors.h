// Errors thrown to JavaScript by every native-io function.
//
// Validation errors carry Node's own codes (ERR_INVALID_ARG_TYPE,
// ERR_OUT_OF_RANGE) so that the JS fallbacks can throw the very same ones;
// system-call failures carry errno, its name as `code`, and the call as
// `syscall`, like Node's own system errors. Every thrower is a C++ exception
// that node-addon-api turns into a JS exception at the boundary: nothing here
// aborts the process.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

namespace c10m {

inline std::string ErrnoName(int err) {
  const char* name = strerrorname_np(err);
  return name != nullptr ? name : "E" + std::to_string(err);
}

// `sentence` says what we were doing and what it means; the errno text follows.
[[noreturn]] inline void ThrowErrno(Napi::Env env, int err, const char* syscall, const std::string& sentence) {
  Napi::Error e = Napi::Error::New(
      env, sentence + " (" + syscall + ": " + std::strerror(err) + ", " + ErrnoName(err) + ")");
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  throw e;
}

[[noreturn]] inline void ThrowTypeError(Napi::Env env, const std::string& message) {
  Napi::TypeError e = Napi::TypeError::New(env, message);
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG_TYPE"));
  throw e;
}

[[noreturn]] inline void ThrowRangeError(Napi::Env env, const std::string& message) {
  Napi::RangeError e = Napi::RangeError::New(env, message);
  e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
  throw e;
}

// An integer argument in [min, max]; `what` names it in the message, and
// `max_note` (if any) says where the maximum comes from.
inline double IntegerArg(const Napi::CallbackInfo& info, size_t index, const char* what, double min, double max,
                         const char* max_note = nullptr) {
  Napi::Env env = info.Env();
  if (info.Length() <= index || !info[index].IsNumber()) {
    ThrowTypeError(env, std::string("The \"") + what + "\" argument must be of type number.");
  }
  double v = info[index].As<Napi::Number>().DoubleValue();
  if (!std::isfinite(v) || std::trunc(v) != v || v < min || v > max) {
    char range[160];
    std::snprintf(range, sizeof range, ">= %.0f and <= %.0f%s%s%s", min, max, max_note ? " (" : "",
                  max_note ? max_note : "", max_note ? ")" : "");
    ThrowRangeError(env, std::string("The value of \"") + what + "\" is out of range. It must be an integer " + range +
                             ". Received " + info[index].ToString().Utf8Value() + ".");
  }
  return v;
}

}  // namespace c10m
