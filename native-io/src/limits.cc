// noFileLimit() and raiseNoFileLimit(): RLIMIT_NOFILE, which no JS API reads
// or sets. (Node already raises the soft limit at start-up; we do it again so
// that the figure is ours to report, and for embedders that do not.)
// The sysctls of limitsReport() are read in JS, native-io/procfs.ts.
#include <napi.h>
#include <sys/resource.h>

#include <cstdlib>
#include <limits>
#include <string>

#include "errors.h"
#include "procfs.h"

namespace c10m {
namespace {

double LimitValue(rlim_t v) {
  return v == RLIM_INFINITY ? std::numeric_limits<double>::infinity() : static_cast<double>(v);
}

rlimit GetNoFile(Napi::Env env) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    ThrowErrno(env, errno, "getrlimit", "could not read this process's open-file limit (RLIMIT_NOFILE)");
  }
  return rl;
}

Napi::Value NoFileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit rl = GetNoFile(env);
  Napi::Object result = Napi::Object::New(env);
  result.Set("soft", Napi::Number::New(env, LimitValue(rl.rlim_cur)));
  result.Set("hard", Napi::Number::New(env, LimitValue(rl.rlim_max)));
  return result;
}

Napi::Value RaiseNoFileLimit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  rlimit rl = GetNoFile(env);
  rlim_t previous = rl.rlim_cur;
  rlim_t target = rl.rlim_max;
  // An unlimited hard limit still cannot be exceeded: the kernel caps
  // descriptors at fs.nr_open and refuses a soft limit above it.
  if (target == RLIM_INFINITY) {
    long long nr_open = std::strtoll(ReadFirstLine("/proc/sys/fs/nr_open").c_str(), nullptr, 10);
    if (nr_open > 0) target = static_cast<rlim_t>(nr_open);
  }
  if (rl.rlim_cur != target) {
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      ThrowErrno(env, errno, "setrlimit",
                 "could not raise the open-file soft limit (RLIMIT_NOFILE) to " + std::to_string(target));
    }
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("soft", Napi::Number::New(env, LimitValue(rl.rlim_cur)));
  result.Set("hard", Napi::Number::New(env, LimitValue(rl.rlim_max)));
  result.Set("previousSoft", Napi::Number::New(env, LimitValue(previous)));
  return result;
}

}  // namespace

void InitLimits(Napi::Env env, Napi::Object exports) {
  exports.Set("noFileLimit", Napi::Function::New(env, NoFileLimit, "noFileLimit"));
  exports.Set("raiseNoFileLimit", Napi::Function::New(env, RaiseNoFileLimit, "raiseNoFileLimit"));
}

}  // namespace c10m
