// attachIpHash(port, groups): steer each client address to one socket of the
// SO_REUSEPORT group listening on `port`, with a classic-BPF program
// (SO_ATTACH_REUSEPORT_CBPF) that returns hash(source address) mod groups.
// The group is the kernel's: every socket bound to the address and port
// with SO_REUSEPORT by the same user, whatever its process, so one program
// attached by any of them indexes the sockets of all (attachIpHash(port,
// groups, true) for a group spanning processes).
//
// uWebSockets.js does not expose its listening descriptor, so we find it:
// every descriptor of this process (/proc/self/fd) that is a TCP socket in
// the listening state (SO_ACCEPTCONN) whose getsockname() port is `port`.
// Sockets of one SO_REUSEPORT group share the family and bound address; a
// program attached to any one of them is the group's program. The index the
// program returns is the position in the group's socket array, which is the
// order in which the sockets joined (see native-io/README.md for what a
// restarted workgroup does to that order).
#include <dirent.h>
#include <linux/filter.h>
#include <napi.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "errors.h"

namespace c10m {
namespace {

struct Listener {
  int fd;
  int family;
  bool reuseport;
  std::string bound_address;  // raw address bytes: the group key with family
};

// Descriptors can be closed by other threads while we scan; a descriptor that
// vanishes or changes under us simply fails one of the checks and is skipped.
std::vector<Listener> FindListeners(Napi::Env env, uint16_t port) {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    ThrowErrno(env, errno, "opendir", "attachIpHash could not list this process's descriptors in /proc/self/fd");
  }
  int own_fd = dirfd(dir);
  std::vector<Listener> found;
  while (dirent* entry = readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == own_fd) continue;
    struct stat st;
    if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_TYPE, &value, &len) != 0 || value != SOCK_STREAM) continue;
    len = sizeof value;
    if (getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || value != 1) continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &alen) != 0) continue;
    Listener l{static_cast<int>(fd), addr.ss_family, false, {}};
    if (addr.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      if (ntohs(a->sin_port) != port) continue;
      l.bound_address.assign(reinterpret_cast<char*>(&a->sin_addr), sizeof a->sin_addr);
    } else if (addr.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      if (ntohs(a->sin6_port) != port) continue;
      l.bound_address.assign(reinterpret_cast<char*>(&a->sin6_addr), sizeof a->sin6_addr);
    } else {
      continue;
    }
    len = sizeof value;
    l.reuseport = getsockopt(l.fd, SOL_SOCKET, SO_REUSEPORT, &value, &len) == 0 && value == 1;
    found.push_back(l);
  }
  closedir(dir);
  return found;
}

sock_filter Stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }
sock_filter Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { return sock_filter{code, jt, jf, k}; }

// The program, run on each SYN with its data pointing past the TCP header;
// SKF_NET_OFF reaches back to the IP header. Keep it in step with
// ipHashIndex() in native-io/iphash.ts, which computes the same index in JS:
//   IPv4:  h = source address (host order of the big-endian word)
//   IPv6:  h = w0 * 0x9E3779B1 + w1 over the first 64 bits (the /64 a client
//          owns, so that a client cannot spread over workgroups by rotating
//          its interface identifier)
//   then murmur3's fmix32(h) mod groups.
std::vector<sock_filter> IpHashProgram(uint32_t groups) {
  const uint32_t net = static_cast<uint32_t>(SKF_NET_OFF);
  std::vector<sock_filter> p;
  p.push_back(Stmt(BPF_LD | BPF_B | BPF_ABS, net + 0));  // 0: version/IHL byte
  p.push_back(Stmt(BPF_ALU | BPF_RSH | BPF_K, 4));       // 1: A = IP version
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, 4, 2, 0));  // 2: v4 -> 5
  p.push_back(Jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 3, 0));  // 3: v6 -> 7
  p.push_back(Stmt(BPF_RET | BPF_K, 0));                  // 4: neither: socket 0
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, net + 12));  // 5: v4 saddr
  p.push_back(Stmt(BPF_JMP | BPF_JA, 5));                 // 6: -> 12 (mix)
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, net + 8));   // 7: v6 saddr word 0
  p.push_back(Stmt(BPF_ALU | BPF_MUL | BPF_K, 0x9E3779B1u));  // 8
  p.push_back(Stmt(BPF_MISC | BPF_TAX, 0));                    // 9
  p.push_back(Stmt(BPF_LD | BPF_W | BPF_ABS, net + 12));       // 10: v6 saddr word 1
  p.push_back(Stmt(BPF_ALU | BPF_ADD | BPF_X, 0));             // 11
  // 12: both paths meet here with h in A.
  // fmix32: h ^= h >> 16; h *= 0x85EBCA6B; h ^= h >> 13; h *= 0xC2B2AE35; h ^= h >> 16
  auto xorshift = [&p](uint32_t shift) {
    p.push_back(Stmt(BPF_MISC | BPF_TAX, 0));
    p.push_back(Stmt(BPF_ALU | BPF_RSH | BPF_K, shift));
    p.push_back(Stmt(BPF_ALU | BPF_XOR | BPF_X, 0));
  };
  xorshift(16);
  p.push_back(Stmt(BPF_ALU | BPF_MUL | BPF_K, 0x85EBCA6Bu));
  xorshift(13);
  p.push_back(Stmt(BPF_ALU | BPF_MUL | BPF_K, 0xC2B2AE35u));
  xorshift(16);
  p.push_back(Stmt(BPF_ALU | BPF_MOD | BPF_K, groups));
  p.push_back(Stmt(BPF_RET | BPF_A, 0));
  return p;
}

Napi::Value AttachIpHash(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint16_t port = static_cast<uint16_t>(IntegerArg(info, 0, "port", 1, 65535));
  uint32_t groups = static_cast<uint32_t>(IntegerArg(info, 1, "groups", 1, 65535));
  // acrossProcesses: the group also holds sockets of other processes (c10m serve --processes),
  // which this process cannot see, so `groups` may exceed its own sockets. While fewer than
  // `groups` sockets are in the group, the kernel hashes the indexes past its end by 4-tuple.
  bool across_processes = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();

  std::vector<Listener> listeners = FindListeners(env, port);
  if (listeners.empty()) {
    Napi::Error e = Napi::Error::New(env, "attachIpHash: no socket of this process listens on TCP port " +
                                              std::to_string(port) + "; call it after every workgroup listens.");
    e.Set("code", Napi::String::New(env, "ERR_NOT_LISTENING"));
    throw e;
  }
  // One entry per SO_REUSEPORT group: same family and bound address.
  std::map<std::pair<int, std::string>, std::vector<Listener>> reuse_groups;
  for (const Listener& l : listeners) {
    if (!l.reuseport) {
      Napi::Error e = Napi::Error::New(env, "attachIpHash: the socket (fd " + std::to_string(l.fd) +
                                                ") listening on port " + std::to_string(port) +
                                                " does not have SO_REUSEPORT, so there is no group to steer.");
      e.Set("code", Napi::String::New(env, "ERR_NO_REUSEPORT"));
      throw e;
    }
    reuse_groups[{l.family, l.bound_address}].push_back(l);
  }
  for (const auto& g : reuse_groups) {
    if (!across_processes && groups > g.second.size()) {
      Napi::RangeError e = Napi::RangeError::New(
          env, "attachIpHash: groups (" + std::to_string(groups) + ") is more than the " +
                   std::to_string(g.second.size()) + " sockets of this process listening on port " +
                   std::to_string(port) + "; indexes past the last socket would fall back to the kernel's own hash.");
      e.Set("code", Napi::String::New(env, "ERR_OUT_OF_RANGE"));
      throw e;
    }
  }

  std::vector<sock_filter> code = IpHashProgram(groups);
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  Napi::Array fds = Napi::Array::New(env);
  uint32_t i = 0;
  for (const auto& g : reuse_groups) {
    int fd = g.second.front().fd;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
      ThrowErrno(env, errno, "setsockopt",
                 "attachIpHash could not attach its BPF program to the socket (fd " + std::to_string(fd) +
                     ") listening on port " + std::to_string(port));
    }
    fds.Set(i++, Napi::Number::New(env, fd));
  }

  Napi::Object result = Napi::Object::New(env);
  result.Set("attached", Napi::Boolean::New(env, true));
  result.Set("fd", fds.Get(0u));
  result.Set("sockets", Napi::Number::New(env, static_cast<double>(listeners.size())));
  result.Set("fds", fds);
  return result;
}

}  // namespace

void InitReuseport(Napi::Env env, Napi::Object exports) {
  exports.Set("attachIpHash", Napi::Function::New(env, AttachIpHash, "attachIpHash"));
}

}  // namespace c10m
