// The benchsub connection engine: one LoadGen object runs one thread with its
// own epoll loop over N client WebSocket connections. It opens them (bind to
// a 127.x.y.z source address, then a non-blocking connect), does the
// handshake, sends each connection's pre-encoded commands as masked frames,
// answers pings, and parses every server frame; the delivery timestamp is
// read out of the binary frame header and the latency recorded in a
// histogram here, so that JavaScript sees only batches: stats(),
// takeHistogram() and connectionCounts(), called about once a second.
//
// With `reconnect`, a connection that fails or is closed is opened again, as
// the SDK does: after a 503 RETRY_LATER or a 429 RATE_LIMITED at the upgrade
// it waits the body's retryAfterMs and comes back (after a 503, with
// &admit=<ticket>), otherwise after a full-jitter backoff. Each connection
// may carry its own query (a token) in the upgrade request.
//
// No static mutable state: everything belongs to one LoadGen, so several can
// run in one process (each with its own thread) and in several threads.
// Built as its own addon (c10m_loadgen.node) so that it needs no change to
// the server's c10m_native addon.
#include <arpa/inet.h>
#include <fcntl.h>
#include <napi.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"
#include "loadgen.h"

namespace c10m {
namespace loadgen {
namespace {

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

uint64_t RealtimeMicros() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

uint64_t MonotonicMicros() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

// Histograms a LoadGen keeps; takeHistogram(kind) names them by number.
enum HistogramKind { kLatency = 0, kConnect = 1, kReady = 2, kHistogramKinds = 3 };

// kRefused: the upgrade was answered 503 or 429; its body (the hint) is being read.
// kWaiting: reconnect only, closed, to be opened again at retry_at_us.
enum ConnState : uint8_t { kIdle, kConnecting, kHandshake, kRefused, kOpen, kClosed, kFailed, kWaiting };

constexpr uint64_t kWakeTag = ~0ull;
constexpr size_t kReadBufferBytes = 256 * 1024;
constexpr size_t kMaxHandshakeBytes = 4096;
// Longest hint body read after a refused upgrade, and the longest ticket kept.
constexpr size_t kMaxRefusalBodyBytes = 4096;
constexpr size_t kMaxTicketChars = 128;
// Seconds of per-second counts kept (upgrades and refusals by wall-clock second).
constexpr size_t kMaxSeconds = 3600;

class LoadGen;

// Routes one connection's parser events to its LoadGen.
struct ConnEvents {
  LoadGen* lg;
  uint32_t index;
  void OnDelivery(uint64_t ts_micros, uint64_t message_bytes);
  void OnDataMessage(int opcode, const uint8_t* head, size_t head_len, uint64_t message_bytes);
  void OnPing(const uint8_t* payload, size_t len);
  void OnPong() {}
  void OnClose(int code);
  void OnProtocolError(const char* why);
};

struct Conn {
  int fd = -1;
  ConnState state = kIdle;
  // How far "\r\n\r\n" has matched at the end of the handshake response.
  uint8_t crlf_matched = 0;
  // Reconnect: this attempt carries a ticket; the session is counted in live_.
  bool with_ticket = false;
  bool live = false;
  // Reconnect: attempts since the last open (the backoff's exponent).
  uint16_t attempt = 0;
  // Reconnect: the node's reconnectWindowMs from the last ping reply (0: none); the backoff's ceiling is at least it.
  uint32_t window_ms = 0;
  uint32_t wait_messages = 0;
  uint32_t replies_left = 0;
  // kRefused: body bytes still to read (Content-Length).
  uint32_t body_left = 0;
  uint64_t started_us = 0;
  // kWaiting: when to open again (monotonic µs).
  uint64_t retry_at_us = 0;
  // Reconnect: the ticket of the last 503 RETRY_LATER, sent as &admit= on the next attempt only.
  std::unique_ptr<std::string> ticket;
  // Unsent output (only after a short write) and the handshake response so far.
  std::unique_ptr<std::string> out;
  std::unique_ptr<std::string> response;
  FrameParser<ConnEvents> parser;
};

struct Options {
  sockaddr_in dest{};
  std::vector<sockaddr_in> sources;
  std::string request;  // the handshake request, sent as is (with the connection's query inserted at query_at)
  std::string accept;   // the Sec-WebSocket-Accept value the response must carry
  uint32_t query_at = 0;              // where in `request` a connection's query (and &admit=) goes: the end of the path's query
  std::vector<uint8_t> queries;       // every connection's query text ("&token=..."), back to back; empty: none
  std::vector<uint32_t> query_ends;   // end offset of connection i's query in `queries`
  bool reconnect = false;             // open a failed or closed connection again (hints, then full-jitter backoff)
  double backoff_initial_ms = 250;    // the SDK's defaults (sdk/backoff.ts)
  double backoff_max_ms = 30000;
  double backoff_factor = 2;
  double max_hint_ms = 240000;        // sdk/refusal.ts MAX_HINT_MS
  double ping_interval_ms = 0;        // reconnect: ping every ready session this often (and once when it gets ready), 0: never
  std::vector<uint8_t> ping_frame;    // the ping command's payload
  int ping_opcode = 1;
  uint32_t connections = 0;
  std::vector<uint8_t> frames;        // every command payload, back to back
  std::vector<uint32_t> frame_ends;   // end offset of each payload in `frames`
  std::vector<uint8_t> frame_opcodes; // 1 text, 2 binary
  std::vector<uint32_t> conn_frames;  // connection i sends frames [conn_frames[i], conn_frames[i+1])
  std::string hello;                  // a text frame sent right after the handshake (socket.io's "40"), if any
  uint32_t wait_messages = 0;         // server messages to wait for after the handshake before sending
  uint32_t expected_replies = 0;      // non-delivery messages after sending that make a session ready
  bool engine_io_ping = false;        // answer Engine.IO's text "2" with "3" (socket.io peers)
  double connect_rate = 0;            // connections opened per second, 0: as fast as max_pending allows
  uint32_t max_pending = 256;         // connections between socket() and the 101 response at once
  uint32_t handshake_timeout_ms = 30000;
};

class LoadGen : public Napi::ObjectWrap<LoadGen> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit LoadGen(const Napi::CallbackInfo& info);
  ~LoadGen() override { StopThread(); }

  // Parser callbacks (epoll thread, lock held).
  void Delivered(uint32_t i, uint64_t ts_micros, uint64_t message_bytes);
  void DataMessage(uint32_t i, int opcode, const uint8_t* head, size_t head_len);
  void Ping(uint32_t i, const uint8_t* payload, size_t len);
  void ServerClose(uint32_t i, int code);
  void ProtocolError(uint32_t i, const char* why);

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value TakeHistogram(const Napi::CallbackInfo& info);
  Napi::Value ConnectionCounts(const Napi::CallbackInfo& info);

  void StopThread();
  void Run();
  void OpenSome();
  void OpenOne(uint32_t i);
  void CheckTimeouts();
  void OnEvent(uint32_t i, uint32_t events);
  void OnConnected(uint32_t i);
  void OnReadable(uint32_t i);
  void OnHandshakeBytes(uint32_t i, const uint8_t* p, size_t n);
  void SendCommands(uint32_t i);
  void SendFrame(uint32_t i, int opcode, const uint8_t* payload, size_t len);
  void Write(uint32_t i, const uint8_t* p, size_t n);
  void Flush(uint32_t i);
  void Fail(uint32_t i, const std::string& why);
  void CloseOpen(uint32_t i, bool at_once = false);
  void MarkReady(uint32_t i);
  void OnRefusalBytes(uint32_t i, const uint8_t* p, size_t n);
  void OnRefused(uint32_t i);
  void Retry(uint32_t i, uint64_t delay_us);
  uint64_t BackoffUs(Conn& c);
  void OpenDue();
  void PingDue();
  void SendPing(uint32_t i);
  void CountSecond(std::vector<uint32_t>& v);
  Napi::Value SecondCounts(const Napi::CallbackInfo& info);
  void Release(uint32_t i);
  void NoteError(const std::string& why);
  void WatchWrites(uint32_t i, bool on);

  Options o_;
  std::vector<Conn> conns_;
  std::vector<uint32_t> messages_;  // deliveries per connection
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  bool started_ = false;

  // Everything below is written by the epoll thread with mu_ held, once per
  // batch of events, and read by JS with mu_ held.
  std::mutex mu_;
  LatencyHistogram histograms_[kHistogramKinds];
  uint64_t opened_ = 0, pending_ = 0, connected_ = 0, ready_ = 0, failed_ = 0, closed_ = 0;
  uint64_t messages_total_ = 0, bytes_ = 0, replies_ = 0, error_replies_ = 0, other_messages_ = 0;
  uint64_t pings_ = 0, clock_skew_ = 0, protocol_errors_ = 0, server_closes_ = 0;
  // Reconnect: sessions ready now; attempts scheduled again; connects and handshakes that failed; upgrades refused with
  // 503 / 429 / another status; refusals that carried a hint; attempts with a ticket, and those refused all the same.
  uint64_t live_ = 0, retries_ = 0, connect_errors_ = 0, refused_503_ = 0, refused_429_ = 0, refused_other_ = 0;
  uint64_t hinted_ = 0, tickets_sent_ = 0, ticket_refusals_ = 0;
  // Reconnect: pings sent, and their replies that carried reconnectWindowMs; the largest window seen.
  uint64_t pings_sent_ = 0, window_replies_ = 0, max_window_ms_ = 0;
  int last_close_code_ = 0;
  std::string first_error_;
  uint64_t started_mono_ = 0, all_connected_mono_ = 0, all_ready_mono_ = 0;
  // Wall-clock ms of the last time every session was live (reconnect), 0: never.
  uint64_t all_live_at_ms_ = 0;
  // Completed upgrades and refused ones (503, 429) per wall-clock second from started_sec_.
  uint64_t started_sec_ = 0;
  std::vector<uint32_t> upgrades_per_sec_, refusals_per_sec_;

  // Epoll thread only.
  uint32_t next_ = 0;
  uint64_t now_us_ = 0;
  uint64_t last_timeout_check_ = 0;
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;
  // Pings: connections are pinged in index order at connections / ping_interval_ms per ms.
  uint32_t ping_cursor_ = 0;
  uint64_t last_ping_us_ = 0;
  double ping_credit_ = 0;
  std::vector<uint8_t> read_buffer_;
  std::vector<uint8_t> frame_buffer_;
  std::string request_buffer_;
  // Reconnect: (retry_at_us, connection), earliest first; an entry whose connection moved on is skipped.
  std::priority_queue<std::pair<uint64_t, uint32_t>, std::vector<std::pair<uint64_t, uint32_t>>, std::greater<>> retries_due_;
};

void ConnEvents::OnDelivery(uint64_t ts, uint64_t bytes) { lg->Delivered(index, ts, bytes); }
void ConnEvents::OnDataMessage(int opcode, const uint8_t* head, size_t head_len, uint64_t) {
  lg->DataMessage(index, opcode, head, head_len);
}
void ConnEvents::OnPing(const uint8_t* p, size_t n) { lg->Ping(index, p, n); }
void ConnEvents::OnClose(int code) { lg->ServerClose(index, code); }
void ConnEvents::OnProtocolError(const char* why) { lg->ProtocolError(index, why); }

// ---- options ------------------------------------------------------------

sockaddr_in ParseAddress(Napi::Env env, const std::string& text, uint16_t port, const char* what) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (inet_pton(AF_INET, text.c_str(), &a.sin_addr) != 1) {
    ThrowTypeError(env, std::string("The ") + what + " \"" + text + "\" is not an IPv4 address.");
  }
  return a;
}

double NumberField(Napi::Env env, Napi::Object obj, const char* name, double min, double max, double fallback) {
  Napi::Value v = obj.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) ThrowTypeError(env, std::string("The \"") + name + "\" option must be of type number.");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max)) {
    ThrowRangeError(env, std::string("The \"") + name + "\" option is out of range: " + std::to_string(d) + ".");
  }
  return d;
}

std::string StringField(Napi::Env env, Napi::Object obj, const char* name) {
  Napi::Value v = obj.Get(name);
  if (!v.IsString()) ThrowTypeError(env, std::string("The \"") + name + "\" option must be of type string.");
  return v.As<Napi::String>().Utf8Value();
}

template <class T>
std::vector<T> TypedField(Napi::Env env, Napi::Object obj, const char* name, napi_typedarray_type type) {
  Napi::Value v = obj.Get(name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    ThrowTypeError(env, std::string("The \"") + name + "\" option must be a typed array of the documented type.");
  }
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  const uint8_t* base = static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
  std::vector<T> out(t.ElementLength());
  if (!out.empty()) std::memcpy(out.data(), base, out.size() * sizeof(T));
  return out;
}

Options ParseOptions(Napi::Env env, Napi::Object obj) {
  Options o;
  uint16_t port = static_cast<uint16_t>(NumberField(env, obj, "port", 1, 65535, 0));
  o.dest = ParseAddress(env, StringField(env, obj, "host"), port, "host");
  Napi::Value sources = obj.Get("sourceAddresses");
  if (!sources.IsArray() || sources.As<Napi::Array>().Length() == 0) {
    ThrowTypeError(env, "The \"sourceAddresses\" option must be a non-empty array of IPv4 addresses.");
  }
  Napi::Array arr = sources.As<Napi::Array>();
  for (uint32_t k = 0; k < arr.Length(); k++) {
    Napi::Value s = arr.Get(k);
    if (!s.IsString()) ThrowTypeError(env, "The \"sourceAddresses\" option must be an array of strings.");
    o.sources.push_back(ParseAddress(env, s.As<Napi::String>().Utf8Value(), 0, "source address"));
  }
  o.request = StringField(env, obj, "request");
  o.accept = StringField(env, obj, "accept");
  o.connections = static_cast<uint32_t>(NumberField(env, obj, "connections", 1, 16777216, 1));
  Napi::Value frames = obj.Get("frames");
  if (!frames.IsBuffer()) ThrowTypeError(env, "The \"frames\" option must be a Buffer.");
  Napi::Buffer<uint8_t> fb = frames.As<Napi::Buffer<uint8_t>>();
  o.frames.assign(fb.Data(), fb.Data() + fb.Length());
  o.frame_ends = TypedField<uint32_t>(env, obj, "frameEnds", napi_uint32_array);
  o.frame_opcodes = TypedField<uint8_t>(env, obj, "frameOpcodes", napi_uint8_array);
  o.conn_frames = TypedField<uint32_t>(env, obj, "connectionFrames", napi_uint32_array);
  if (o.frame_opcodes.size() != o.frame_ends.size()) ThrowRangeError(env, "frameOpcodes and frameEnds differ in length.");
  if (o.conn_frames.size() != static_cast<size_t>(o.connections) + 1) {
    ThrowRangeError(env, "connectionFrames must have connections + 1 entries.");
  }
  uint32_t prev = 0;
  for (uint32_t e : o.frame_ends) {
    if (e < prev || e > o.frames.size()) ThrowRangeError(env, "frameEnds must be ascending offsets into frames.");
    prev = e;
  }
  for (size_t k = 0; k < o.conn_frames.size(); k++) {
    if (o.conn_frames[k] > o.frame_ends.size() || (k > 0 && o.conn_frames[k] < o.conn_frames[k - 1])) {
      ThrowRangeError(env, "connectionFrames must be ascending indexes into frameEnds.");
    }
  }
  Napi::Value hello = obj.Get("hello");
  if (hello.IsString()) o.hello = hello.As<Napi::String>().Utf8Value();
  o.wait_messages = static_cast<uint32_t>(NumberField(env, obj, "waitMessages", 0, 1000, 0));
  o.expected_replies = static_cast<uint32_t>(NumberField(env, obj, "expectedReplies", 0, 1e6, 0));
  Napi::Value eio = obj.Get("engineIoPing");
  o.engine_io_ping = eio.IsBoolean() && eio.As<Napi::Boolean>().Value();
  o.connect_rate = NumberField(env, obj, "connectRate", 0, 1e9, 0);
  o.max_pending = static_cast<uint32_t>(NumberField(env, obj, "maxPending", 1, 1e7, 256));
  o.handshake_timeout_ms = static_cast<uint32_t>(NumberField(env, obj, "handshakeTimeoutMs", 1, 3.6e6, 30000));
  o.query_at = static_cast<uint32_t>(NumberField(env, obj, "queryAt", 0, static_cast<double>(o.request.size()), 0));
  Napi::Value queries = obj.Get("queries");
  if (!queries.IsUndefined()) {
    if (!queries.IsBuffer()) ThrowTypeError(env, "The \"queries\" option must be a Buffer.");
    Napi::Buffer<uint8_t> qb = queries.As<Napi::Buffer<uint8_t>>();
    o.queries.assign(qb.Data(), qb.Data() + qb.Length());
    o.query_ends = TypedField<uint32_t>(env, obj, "queryEnds", napi_uint32_array);
    if (o.query_ends.size() != o.connections) ThrowRangeError(env, "queryEnds must have one entry per connection.");
    uint32_t last = 0;
    for (uint32_t e : o.query_ends) {
      if (e < last || e > o.queries.size()) ThrowRangeError(env, "queryEnds must be ascending offsets into queries.");
      last = e;
    }
  }
  Napi::Value reconnect = obj.Get("reconnect");
  o.reconnect = reconnect.IsBoolean() && reconnect.As<Napi::Boolean>().Value();
  o.backoff_initial_ms = NumberField(env, obj, "backoffInitialMs", 0, 3.6e6, 250);
  o.backoff_max_ms = NumberField(env, obj, "backoffMaxMs", o.backoff_initial_ms, 3.6e6, std::max(30000.0, o.backoff_initial_ms));
  o.backoff_factor = NumberField(env, obj, "backoffFactor", 1, 100, 2);
  o.max_hint_ms = NumberField(env, obj, "maxHintMs", 0, 3.6e6, 240000);
  o.ping_interval_ms = NumberField(env, obj, "pingIntervalMs", 0, 3.6e6, 0);
  if (o.ping_interval_ms > 0) {
    o.ping_frame = TypedField<uint8_t>(env, obj, "pingFrame", napi_uint8_array);
    if (o.ping_frame.empty() || o.ping_frame.size() > 125) ThrowRangeError(env, "pingFrame must be 1 to 125 bytes.");
    o.ping_opcode = static_cast<int>(NumberField(env, obj, "pingOpcode", 1, 2, 1));
  }
  return o;
}

// ---- LoadGen ------------------------------------------------------------

Napi::Function LoadGen::Define(Napi::Env env) {
  return DefineClass(env, "LoadGen",
                     {InstanceMethod<&LoadGen::Start>("start"), InstanceMethod<&LoadGen::Stop>("stop"),
                      InstanceMethod<&LoadGen::Stats>("stats"), InstanceMethod<&LoadGen::TakeHistogram>("takeHistogram"),
                      InstanceMethod<&LoadGen::ConnectionCounts>("connectionCounts"),
                      InstanceMethod<&LoadGen::SecondCounts>("secondCounts")});
}

LoadGen::LoadGen(const Napi::CallbackInfo& info) : Napi::ObjectWrap<LoadGen>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject()) ThrowTypeError(env, "The \"options\" argument must be of type object.");
  o_ = ParseOptions(env, info[0].As<Napi::Object>());
  conns_ = std::vector<Conn>(o_.connections);
  messages_.assign(o_.connections, 0);
  read_buffer_.resize(kReadBufferBytes);
  rng_ ^= reinterpret_cast<uintptr_t>(this) ^ MonotonicMicros();
}

Napi::Value LoadGen::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (started_) ThrowRangeError(env, "This LoadGen was already started; make a new one.");
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) ThrowErrno(env, errno, "epoll_create1", "could not create the load generator's epoll instance");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    int err = errno;
    close(epoll_fd_);
    epoll_fd_ = -1;
    ThrowErrno(env, err, "eventfd", "could not create the load generator's wake-up descriptor");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
  started_ = true;
  started_mono_ = MonotonicMicros();
  started_sec_ = RealtimeMicros() / 1000000u;
  thread_ = std::thread([this] { Run(); });
  return env.Undefined();
}

Napi::Value LoadGen::Stop(const Napi::CallbackInfo& info) {
  StopThread();
  return info.Env().Undefined();
}

void LoadGen::StopThread() {
  if (!started_) return;
  stopping_.store(true);
  uint64_t one = 1;
  ssize_t w = write(wake_fd_, &one, sizeof one);
  (void)w;
  if (thread_.joinable()) thread_.join();
  for (uint32_t i = 0; i < conns_.size(); i++) {
    if (conns_[i].fd >= 0) {
      close(conns_[i].fd);
      conns_[i].fd = -1;
    }
  }
  close(wake_fd_);
  close(epoll_fd_);
  wake_fd_ = epoll_fd_ = -1;
  started_ = false;
}

Napi::Value LoadGen::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Copy under the lock, build the JS object after it: an allocation may run
  // the garbage collector, and the epoll thread must never wait for that.
  uint64_t v[27];
  int last_close_code;
  double all_connected, all_ready, all_live_at;
  std::string first_error;
  {
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t copy[27] = {opened_,       pending_,        connected_,      ready_,          failed_,         closed_,
                         messages_total_, bytes_,        replies_,        error_replies_,  other_messages_, pings_,
                         clock_skew_,   protocol_errors_, server_closes_, live_,           retries_,        connect_errors_,
                         refused_503_,  refused_429_,    refused_other_,  hinted_,         tickets_sent_,   ticket_refusals_,
                         pings_sent_,   window_replies_, max_window_ms_};
    std::memcpy(v, copy, sizeof v);
    last_close_code = last_close_code_;
    all_connected = all_connected_mono_ ? (all_connected_mono_ - started_mono_) / 1e6 : -1;
    all_ready = all_ready_mono_ ? (all_ready_mono_ - started_mono_) / 1e6 : -1;
    all_live_at = static_cast<double>(all_live_at_ms_);
    first_error = first_error_;
  }
  static constexpr const char* kNames[27] = {
      "opened",        "pending",       "connected",      "ready",       "failed",     "closed",
      "messages",      "bytes",         "replies",        "errorReplies", "otherMessages", "pings",
      "clockSkew",     "protocolErrors", "serverCloses",  "live",        "retries",    "connectErrors",
      "refused503",    "refused429",    "refusedOther",   "hinted",      "ticketsSent", "ticketRefusals",
      "pingsSent",     "windowReplies", "maxWindowMs"};
  Napi::Object s = Napi::Object::New(env);
  s.Set("connections", Napi::Number::New(env, o_.connections));
  for (int k = 0; k < 27; k++) s.Set(kNames[k], Napi::Number::New(env, static_cast<double>(v[k])));
  // Reconnect: wall-clock ms of the last moment every session was ready, 0: not yet.
  s.Set("allLiveAtMs", Napi::Number::New(env, all_live_at));
  s.Set("lastCloseCode", Napi::Number::New(env, last_close_code));
  // Seconds from start() until every connection was open (or ready); -1 until then.
  s.Set("allConnectedSeconds", Napi::Number::New(env, all_connected));
  s.Set("allReadySeconds", Napi::Number::New(env, all_ready));
  if (first_error.empty()) {
    s.Set("firstError", env.Null());
  } else {
    s.Set("firstError", Napi::String::New(env, first_error));
  }
  return s;
}

Napi::Value LoadGen::TakeHistogram(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int kind = static_cast<int>(IntegerArg(info, 0, "kind", 0, kHistogramKinds - 1));
  std::vector<double> pairs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    histograms_[kind].TakeInto(&pairs);
  }
  Napi::Float64Array out = Napi::Float64Array::New(env, pairs.size());
  if (!pairs.empty()) std::memcpy(out.Data(), pairs.data(), pairs.size() * sizeof(double));
  return out;
}

Napi::Value LoadGen::ConnectionCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Uint32Array out = Napi::Uint32Array::New(env, messages_.size());
  std::lock_guard<std::mutex> lock(mu_);
  if (!messages_.empty()) std::memcpy(out.Data(), messages_.data(), messages_.size() * sizeof(uint32_t));
  return out;
}

// [second, upgrades, refusals, ...] for every wall-clock second (Unix seconds) since start that had either.
Napi::Value LoadGen::SecondCounts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::vector<double> rows;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = std::max(upgrades_per_sec_.size(), refusals_per_sec_.size());
    for (size_t k = 0; k < n; k++) {
      uint32_t up = k < upgrades_per_sec_.size() ? upgrades_per_sec_[k] : 0;
      uint32_t no = k < refusals_per_sec_.size() ? refusals_per_sec_[k] : 0;
      if (up == 0 && no == 0) continue;
      rows.push_back(static_cast<double>(started_sec_ + k));
      rows.push_back(up);
      rows.push_back(no);
    }
  }
  Napi::Float64Array out = Napi::Float64Array::New(env, rows.size());
  if (!rows.empty()) std::memcpy(out.Data(), rows.data(), rows.size() * sizeof(double));
  return out;
}

// ---- the epoll thread -----------------------------------------------------

void LoadGen::Run() {
  std::vector<epoll_event> events(1024);
  while (!stopping_.load(std::memory_order_relaxed)) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      now_us_ = RealtimeMicros();
      OpenSome();
      OpenDue();
      PingDue();
      CheckTimeouts();
    }
    bool opening = next_ < o_.connections;
    int timeout_ms = opening ? 1 : 100;
    if (!retries_due_.empty()) {
      uint64_t now = MonotonicMicros();
      uint64_t at = retries_due_.top().first;
      int until = at <= now ? 0 : static_cast<int>(std::min<uint64_t>(100, (at - now + 999) / 1000));
      // Due but held back by max_pending: look again soon (a handshake ending frees a place).
      timeout_ms = std::min(timeout_ms, std::max(until, pending_ >= o_.max_pending ? 1 : 0));
    }
    int k = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
    if (k < 0) {
      if (errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      NoteError(std::string("epoll_wait: ") + std::strerror(errno));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    for (int e = 0; e < k; e++) {
      if (events[e].data.u64 == kWakeTag) continue;
      OnEvent(static_cast<uint32_t>(events[e].data.u64), events[e].events);
    }
  }
}

void LoadGen::OpenSome() {
  uint64_t allowed = o_.connections;
  if (o_.connect_rate > 0) {
    double elapsed = (MonotonicMicros() - started_mono_) / 1e6;
    allowed = std::min<uint64_t>(o_.connections, static_cast<uint64_t>(o_.connect_rate * elapsed) + 1);
  }
  while (next_ < allowed && pending_ < o_.max_pending) OpenOne(next_++);
}

// Reconnect: opens the connections whose time has come, within max_pending.
void LoadGen::OpenDue() {
  if (retries_due_.empty()) return;
  uint64_t now = MonotonicMicros();
  while (!retries_due_.empty() && pending_ < o_.max_pending) {
    auto [at, i] = retries_due_.top();
    if (at > now) break;
    retries_due_.pop();
    Conn& c = conns_[i];
    if (c.state == kWaiting && c.retry_at_us == at) OpenOne(i);
  }
}

// Full jitter (sdk/backoff.ts): uniform in [0, min(max, initial * factor^attempt)); counts the attempt.
// Pings (reconnect with ping_interval_ms): every ready session, spread evenly over the interval, as the SDK's own
// ping timers are; the replies' reconnectWindowMs spreads the next reconnect (BackoffUs).
void LoadGen::PingDue() {
  if (o_.ping_interval_ms <= 0) return;
  uint64_t now = MonotonicMicros();
  if (last_ping_us_ != 0) ping_credit_ += static_cast<double>(now - last_ping_us_) * o_.connections / (o_.ping_interval_ms * 1000.0);
  last_ping_us_ = now;
  while (ping_credit_ >= 1) {
    ping_credit_ -= 1;
    uint32_t i = ping_cursor_;
    ping_cursor_ = ping_cursor_ + 1 == o_.connections ? 0 : ping_cursor_ + 1;
    if (conns_[i].state == kOpen && conns_[i].replies_left == UINT32_MAX) SendPing(i);
  }
}

void LoadGen::SendPing(uint32_t i) {
  pings_sent_++;
  SendFrame(i, o_.ping_opcode, o_.ping_frame.data(), o_.ping_frame.size());
}

// The value of "reconnectWindowMs" in a ping reply's first bytes (JSON text or a msgpack map), or -1.
int64_t WindowOf(int opcode, const uint8_t* head, size_t len) {
  static constexpr char kJson[] = "\"reconnectWindowMs\":";
  static constexpr uint8_t kPack[] = {0xb1, 'r', 'e', 'c', 'o', 'n', 'n', 'e', 'c', 't', 'W', 'i', 'n', 'd', 'o', 'w', 'M', 's'};
  const uint8_t* end = head + len;
  if (opcode == 1) {
    const uint8_t* at = std::search(head, end, kJson, kJson + sizeof kJson - 1);
    if (at == end) return -1;
    int64_t v = 0;
    const uint8_t* p = at + sizeof kJson - 1;
    if (p == end || *p < '0' || *p > '9') return -1;
    for (; p < end && *p >= '0' && *p <= '9' && v < 1000000000; p++) v = v * 10 + (*p - '0');
    return v;
  }
  const uint8_t* at = std::search(head, end, kPack, kPack + sizeof kPack);
  if (at == end) return -1;
  const uint8_t* p = at + sizeof kPack;
  if (p >= end) return -1;
  if (*p < 0x80) return *p;
  if (*p == 0xcc && p + 1 < end) return p[1];
  if (*p == 0xcd && p + 2 < end) return (p[1] << 8) | p[2];
  if (*p == 0xce && p + 4 < end) return (static_cast<int64_t>(p[1]) << 24) | (p[2] << 16) | (p[3] << 8) | p[4];
  return -1;
}

uint64_t LoadGen::BackoffUs(Conn& c) {
  double ceiling = std::min(o_.backoff_max_ms, o_.backoff_initial_ms * std::pow(o_.backoff_factor, std::min<int>(c.attempt, 64)));
  // The node's window (the SDK's rule, sdk/backoff.ts): a crowd cut off together spreads over it.
  ceiling = std::max(ceiling, static_cast<double>(c.window_ms));
  if (c.attempt < UINT16_MAX) c.attempt++;
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  double unit = static_cast<double>(rng_ >> 11) / 9007199254740992.0;
  return static_cast<uint64_t>(std::floor(unit * ceiling) * 1000);
}

// Reconnect: closes the connection (if open) and opens it again after delay_us.
void LoadGen::Retry(uint32_t i, uint64_t delay_us) {
  Conn& c = conns_[i];
  if (c.state == kConnecting || c.state == kHandshake || c.state == kRefused) pending_--;
  Release(i);
  retries_++;
  c.state = kWaiting;
  c.retry_at_us = MonotonicMicros() + delay_us;
  retries_due_.emplace(c.retry_at_us, i);
}

void LoadGen::CountSecond(std::vector<uint32_t>& v) {
  uint64_t k = RealtimeMicros() / 1000000u - started_sec_;
  if (k >= kMaxSeconds) return;
  if (v.size() <= k) v.resize(k + 1, 0);
  v[k]++;
}

void LoadGen::OpenOne(uint32_t i) {
  Conn& c = conns_[i];
  c.started_us = MonotonicMicros();
  c.crlf_matched = 0;
  c.replies_left = o_.expected_replies;
  c.wait_messages = 0;
  c.body_left = 0;
  c.parser = FrameParser<ConnEvents>();
  opened_++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c.state = kFailed;
    failed_++;
    NoteError(std::string("socket: ") + std::strerror(errno) + " (raise the open-file limit, or run more processes)");
    return;
  }
  c.fd = fd;
  int one = 1;
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const sockaddr_in& src = o_.sources[i % o_.sources.size()];
  if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
    Fail(i, std::string("bind: ") + std::strerror(errno));
    return;
  }
  pending_++;
  c.state = kConnecting;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&o_.dest), sizeof o_.dest) != 0 && errno != EINPROGRESS) {
    Fail(i, std::string("connect: ") + std::strerror(errno));
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = i;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) Fail(i, std::string("epoll_ctl: ") + std::strerror(errno));
}

void LoadGen::CheckTimeouts() {
  uint64_t now = MonotonicMicros();
  if (now - last_timeout_check_ < 1000000) return;
  last_timeout_check_ = now;
  if (pending_ == 0) return;
  uint64_t limit = static_cast<uint64_t>(o_.handshake_timeout_ms) * 1000;
  for (uint32_t i = 0; i < next_; i++) {
    Conn& c = conns_[i];
    if ((c.state == kConnecting || c.state == kHandshake || c.state == kRefused) && now - c.started_us > limit) {
      Fail(i, "handshake timed out after " + std::to_string(o_.handshake_timeout_ms) + " ms");
    }
  }
}

void LoadGen::OnEvent(uint32_t i, uint32_t events) {
  Conn& c = conns_[i];
  if (c.fd < 0) return;
  if (c.state == kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) return Fail(i, std::string("connect: ") + std::strerror(err));
    if (events & (EPOLLERR | EPOLLHUP)) return Fail(i, "connect: connection reset");
    if (events & EPOLLOUT) OnConnected(i);
    return;
  }
  if (events & EPOLLOUT) Flush(i);
  if (c.fd >= 0 && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) OnReadable(i);
}

void LoadGen::WatchWrites(uint32_t i, bool on) {
  epoll_event ev{};
  ev.events = EPOLLIN | (on ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  ev.data.u64 = i;
  epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, conns_[i].fd, &ev);
}

void LoadGen::OnConnected(uint32_t i) {
  Conn& c = conns_[i];
  c.state = kHandshake;
  c.response = std::make_unique<std::string>();
  WatchWrites(i, false);
  c.with_ticket = c.ticket != nullptr;
  if (o_.query_ends.empty() && !c.with_ticket) {
    Write(i, reinterpret_cast<const uint8_t*>(o_.request.data()), o_.request.size());
    return;
  }
  // The connection's own query, and the ticket of its last refusal (used once), inside the request line.
  std::string& r = request_buffer_;
  r.assign(o_.request, 0, o_.query_at);
  if (!o_.query_ends.empty()) {
    uint32_t begin = i == 0 ? 0 : o_.query_ends[i - 1];
    r.append(reinterpret_cast<const char*>(o_.queries.data()) + begin, o_.query_ends[i] - begin);
  }
  if (c.with_ticket) {
    r.append("&admit=").append(*c.ticket);
    c.ticket.reset();
    tickets_sent_++;
  }
  r.append(o_.request, o_.query_at, std::string::npos);
  Write(i, reinterpret_cast<const uint8_t*>(r.data()), r.size());
}

void LoadGen::OnReadable(uint32_t i) {
  Conn& c = conns_[i];
  ssize_t n = read(c.fd, read_buffer_.data(), read_buffer_.size());
  if (n == 0) {
    if (c.state == kOpen) {
      if (c.fd >= 0) CloseOpen(i);
    } else if (c.state == kRefused) {
      OnRefused(i);
    } else {
      Fail(i, "the server closed the connection during the handshake");
    }
    return;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    if (c.state == kOpen) {
      NoteError(std::string("read: ") + std::strerror(errno));
      CloseOpen(i);
    } else {
      Fail(i, std::string("read: ") + std::strerror(errno));
    }
    return;
  }
  bytes_ += static_cast<uint64_t>(n);
  now_us_ = RealtimeMicros();
  const uint8_t* p = read_buffer_.data();
  if (c.state == kHandshake) return OnHandshakeBytes(i, p, static_cast<size_t>(n));
  if (c.state == kRefused) return OnRefusalBytes(i, p, static_cast<size_t>(n));
  if (c.state == kOpen) {
    ConnEvents h{this, i};
    c.parser.Feed(p, static_cast<size_t>(n), h);
  }
}

void LoadGen::OnHandshakeBytes(uint32_t i, const uint8_t* p, size_t n) {
  Conn& c = conns_[i];
  static constexpr char kEnd[] = "\r\n\r\n";
  size_t used = 0;
  while (used < n && c.crlf_matched < 4) {
    char ch = static_cast<char>(p[used++]);
    c.crlf_matched = ch == kEnd[c.crlf_matched] ? c.crlf_matched + 1 : (ch == '\r' ? 1 : 0);
  }
  c.response->append(reinterpret_cast<const char*>(p), used);
  if (c.crlf_matched < 4) {
    if (c.response->size() > kMaxHandshakeBytes) Fail(i, "handshake response over 4096 bytes");
    return;
  }
  const std::string& r = *c.response;
  if (r.compare(0, 12, "HTTP/1.1 101") != 0) {
    if (o_.reconnect && (r.compare(0, 12, "HTTP/1.1 503") == 0 || r.compare(0, 12, "HTTP/1.1 429") == 0)) {
      // The hint is in the body: read Content-Length bytes of it (the server closes after them).
      std::string lower(r);
      for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t at = lower.find("\r\ncontent-length:");
      // Without a Content-Length: up to the end of the stream.
      size_t length = at == std::string::npos ? kMaxRefusalBodyBytes : std::strtoul(lower.c_str() + at + 17, nullptr, 10);
      c.state = kRefused;
      c.body_left = static_cast<uint32_t>(std::min(length, kMaxRefusalBodyBytes));
      return OnRefusalBytes(i, p + used, n - used);
    }
    if (o_.reconnect) refused_other_++;
    std::string status = r.substr(0, r.find('\r'));
    return Fail(i, "handshake refused: " + status);
  }
  if (r.find(o_.accept) == std::string::npos) return Fail(i, "handshake response without the expected Sec-WebSocket-Accept");
  c.response.reset();
  c.state = kOpen;
  c.attempt = 0;
  pending_--;
  connected_++;
  CountSecond(upgrades_per_sec_);
  uint64_t mono = MonotonicMicros();
  histograms_[kConnect].Record(mono - c.started_us);
  if (connected_ == o_.connections) all_connected_mono_ = mono;
  c.wait_messages = o_.wait_messages;
  if (!o_.hello.empty()) SendFrame(i, 1, reinterpret_cast<const uint8_t*>(o_.hello.data()), o_.hello.size());
  if (c.wait_messages == 0) SendCommands(i);
  if (c.fd >= 0 && used < n) {
    ConnEvents h{this, i};
    c.parser.Feed(p + used, n - used, h);
  }
}

// Reconnect: the body of a 503 or 429 answer to the upgrade, until Content-Length bytes (or the end of the stream).
void LoadGen::OnRefusalBytes(uint32_t i, const uint8_t* p, size_t n) {
  Conn& c = conns_[i];
  size_t take = std::min<size_t>(n, c.body_left);
  c.response->append(reinterpret_cast<const char*>(p), take);
  c.body_left -= static_cast<uint32_t>(take);
  if (c.body_left == 0) OnRefused(i);
}

// Reconnect: a refused upgrade. 503 RETRY_LATER and 429 RATE_LIMITED: wait the body's retryAfterMs exactly (the
// Retry-After header's seconds without it; at most max_hint_ms), with the ticket of a 503 on the next attempt. Any
// other refusal: the full-jitter backoff. As sdk/client.ts does.
void LoadGen::OnRefused(uint32_t i) {
  Conn& c = conns_[i];
  const std::string& r = *c.response;
  bool is503 = r.compare(0, 12, "HTTP/1.1 503") == 0;
  if (is503) refused_503_++;
  else refused_429_++;
  CountSecond(refusals_per_sec_);
  if (c.with_ticket) ticket_refusals_++;
  size_t head_end = r.find("\r\n\r\n");
  std::string body = head_end == std::string::npos ? std::string() : r.substr(head_end + 4);
  bool hinted_code = body.find(is503 ? "\"code\":\"RETRY_LATER\"" : "\"code\":\"RATE_LIMITED\"") != std::string::npos;
  double hint_ms = -1;
  size_t at = body.find("\"retryAfterMs\":");
  if (at != std::string::npos) {
    hint_ms = std::strtod(body.c_str() + at + 15, nullptr);
  } else {
    std::string lower(r, 0, head_end == std::string::npos ? r.size() : head_end);
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    size_t h = lower.find("\r\nretry-after:");
    if (h != std::string::npos) hint_ms = std::strtod(lower.c_str() + h + 14, nullptr) * 1000;
  }
  if (!hinted_code || !(hint_ms >= 0)) return Retry(i, BackoffUs(c));
  hinted_++;
  size_t t = is503 ? body.find("\"ticket\":\"") : std::string::npos;
  if (t != std::string::npos) {
    size_t from = t + 10;
    size_t to = body.find('"', from);
    bool ok = to != std::string::npos && to > from && to - from <= kMaxTicketChars;
    for (size_t k = from; ok && k < to; k++) ok = std::isalnum(static_cast<unsigned char>(body[k])) || body[k] == '-' || body[k] == '_';
    if (ok) c.ticket = std::make_unique<std::string>(body, from, to - from);
  }
  if (c.attempt < UINT16_MAX) c.attempt++;
  Retry(i, static_cast<uint64_t>(std::ceil(std::min(hint_ms, o_.max_hint_ms))) * 1000);
}

void LoadGen::MarkReady(uint32_t i) {
  Conn& c = conns_[i];
  c.replies_left = UINT32_MAX;
  ready_++;
  uint64_t mono = MonotonicMicros();
  histograms_[kReady].Record(mono - c.started_us);
  if (ready_ == o_.connections) all_ready_mono_ = mono;
  if (!c.live) {
    c.live = true;
    if (++live_ == o_.connections) all_live_at_ms_ = RealtimeMicros() / 1000u;
  }
  // The SDK pings soon after it opens (the window it learns is the node's now).
  if (o_.ping_interval_ms > 0 && c.state == kOpen) SendPing(i);
}

void LoadGen::SendCommands(uint32_t i) {
  for (uint32_t f = o_.conn_frames[i]; f < o_.conn_frames[i + 1] && conns_[i].fd >= 0; f++) {
    uint32_t begin = f == 0 ? 0 : o_.frame_ends[f - 1];
    SendFrame(i, o_.frame_opcodes[f], o_.frames.data() + begin, o_.frame_ends[f] - begin);
  }
  Conn& c = conns_[i];
  // Nothing to wait for: ready as soon as the commands are out.
  if (c.replies_left == 0 && c.state == kOpen) MarkReady(i);
}

// A masked client frame (RFC 6455 5.3): the mask comes from a xorshift
// generator; it need not be unpredictable to a load generator's own server.
void LoadGen::SendFrame(uint32_t i, int opcode, const uint8_t* payload, size_t len) {
  std::vector<uint8_t>& f = frame_buffer_;
  f.clear();
  f.push_back(static_cast<uint8_t>(0x80 | opcode));
  if (len < 126) {
    f.push_back(static_cast<uint8_t>(0x80 | len));
  } else if (len < 65536) {
    f.push_back(0x80 | 126);
    f.push_back(static_cast<uint8_t>(len >> 8));
    f.push_back(static_cast<uint8_t>(len));
  } else {
    f.push_back(0x80 | 127);
    for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<uint8_t>(static_cast<uint64_t>(len) >> s));
  }
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  uint8_t mask[4] = {static_cast<uint8_t>(rng_), static_cast<uint8_t>(rng_ >> 8), static_cast<uint8_t>(rng_ >> 16),
                     static_cast<uint8_t>(rng_ >> 24)};
  f.insert(f.end(), mask, mask + 4);
  size_t at = f.size();
  f.resize(at + len);
  for (size_t k = 0; k < len; k++) f[at + k] = payload[k] ^ mask[k & 3];
  Write(i, f.data(), f.size());
}

void LoadGen::Write(uint32_t i, const uint8_t* p, size_t n) {
  Conn& c = conns_[i];
  // The parser may still report frames of a read after the connection was closed.
  if (c.fd < 0) return;
  if (c.out && !c.out->empty()) {
    c.out->append(reinterpret_cast<const char*>(p), n);
    return;
  }
  while (n > 0) {
    ssize_t w = send(c.fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      if (c.state == kOpen) {
        NoteError(std::string("send: ") + std::strerror(errno));
        CloseOpen(i);
      } else {
        Fail(i, std::string("send: ") + std::strerror(errno));
      }
      return;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  if (n > 0) {
    if (!c.out) c.out = std::make_unique<std::string>();
    c.out->append(reinterpret_cast<const char*>(p), n);
    WatchWrites(i, true);
  }
}

void LoadGen::Flush(uint32_t i) {
  Conn& c = conns_[i];
  if (!c.out || c.out->empty()) return;
  std::string pending;
  pending.swap(*c.out);
  Write(i, reinterpret_cast<const uint8_t*>(pending.data()), pending.size());
  if (c.fd >= 0 && (!c.out || c.out->empty())) {
    c.out.reset();
    WatchWrites(i, false);
  }
}

void LoadGen::Delivered(uint32_t i, uint64_t ts_micros, uint64_t) {
  messages_total_++;
  messages_[i]++;
  if (ts_micros > now_us_) {
    // The publisher's clock ran ahead of ours (another host, or clock steps): count it as 0.
    clock_skew_++;
    histograms_[kLatency].Record(0);
  } else {
    histograms_[kLatency].Record(now_us_ - ts_micros);
  }
}

void LoadGen::DataMessage(uint32_t i, int opcode, const uint8_t* head, size_t head_len) {
  Conn& c = conns_[i];
  if (o_.engine_io_ping && opcode == 1 && head_len == 1 && head[0] == '2') {
    static constexpr uint8_t kPong[] = {'3'};
    SendFrame(i, 1, kPong, 1);
    return;
  }
  if (c.wait_messages > 0) {
    if (--c.wait_messages == 0) SendCommands(i);
    return;
  }
  if (c.replies_left == 0 || c.replies_left == UINT32_MAX) {
    int64_t w = o_.ping_interval_ms > 0 ? WindowOf(opcode, head, head_len) : -1;
    if (w < 0) {
      other_messages_++;
      return;
    }
    window_replies_++;
    c.window_ms = static_cast<uint32_t>(std::min<int64_t>(w, 3600000));
    if (c.window_ms > max_window_ms_) max_window_ms_ = c.window_ms;
    return;
  }
  replies_++;
  // A msgpack reply map carrying an error has the fixstr key "error" near its start.
  static constexpr uint8_t kErrorKey[] = {0xa5, 'e', 'r', 'r', 'o', 'r'};
  if (opcode == 2 && std::search(head, head + head_len, kErrorKey, kErrorKey + 6) != head + head_len) error_replies_++;
  if (--c.replies_left == 0) MarkReady(i);
}

void LoadGen::Ping(uint32_t i, const uint8_t* payload, size_t len) {
  pings_++;
  uint8_t copy[125] = {};
  std::memcpy(copy, payload, len);
  SendFrame(i, 10, copy, len);
}

void LoadGen::ServerClose(uint32_t i, int code) {
  if (conns_[i].fd < 0) return;
  server_closes_++;
  last_close_code_ = code;
  uint8_t echo[2] = {static_cast<uint8_t>(code >> 8), static_cast<uint8_t>(code)};
  if (code != 1005) SendFrame(i, 8, echo, 2);
  // Going away (1001; spread over the node's window when it gave one), too slow (4000), token expired (4003): the
  // SDK reconnects at once (the first time).
  if (conns_[i].fd >= 0) CloseOpen(i, (code == 1001 && conns_[i].window_ms == 0) || code == 4000 || code == 4003);
}

void LoadGen::ProtocolError(uint32_t i, const char* why) {
  protocol_errors_++;
  NoteError(std::string("protocol error: ") + why);
  CloseOpen(i);
}

void LoadGen::Fail(uint32_t i, const std::string& why) {
  Conn& c = conns_[i];
  if (o_.reconnect && !stopping_.load(std::memory_order_relaxed)) {
    // A node that is down (refused connects) or a handshake that broke off: the backoff, not a failure.
    connect_errors_++;
    return Retry(i, BackoffUs(c));
  }
  if (c.state == kConnecting || c.state == kHandshake || c.state == kRefused) pending_--;
  failed_++;
  NoteError(why);
  c.state = kFailed;
  Release(i);
}

void LoadGen::CloseOpen(uint32_t i, bool at_once) {
  Conn& c = conns_[i];
  closed_++;
  if (c.live) {
    c.live = false;
    live_--;
  }
  if (o_.reconnect && !stopping_.load(std::memory_order_relaxed)) {
    uint64_t delay = at_once && c.attempt == 0 ? 0 : BackoffUs(c);
    if (at_once && c.attempt == 0) c.attempt++;
    return Retry(i, delay);
  }
  c.state = kClosed;
  Release(i);
}

void LoadGen::Release(uint32_t i) {
  Conn& c = conns_[i];
  if (c.fd >= 0) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    close(c.fd);
    c.fd = -1;
  }
  c.out.reset();
  c.response.reset();
}

void LoadGen::NoteError(const std::string& why) {
  if (first_error_.empty()) first_error_ = why;
}

// ---- parser test entry point --------------------------------------------

// Records every parser event as a JS object, for test/loadgen-parser.test.ts.
struct RecordingEvents {
  Napi::Env env;
  Napi::Array events;
  uint64_t now_micros;
  uint32_t n = 0;
  Napi::Object Add(const char* type) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("type", type);
    events.Set(n++, o);
    return o;
  }
  void OnDelivery(uint64_t ts, uint64_t bytes) {
    Napi::Object o = Add("delivery");
    o.Set("ts", Napi::Number::New(env, static_cast<double>(ts)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
    o.Set("latency", Napi::Number::New(env, ts > now_micros ? 0.0 : static_cast<double>(now_micros - ts)));
  }
  void OnDataMessage(int opcode, const uint8_t* head, size_t head_len, uint64_t bytes) {
    Napi::Object o = Add("message");
    o.Set("opcode", opcode);
    o.Set("head", Napi::Buffer<uint8_t>::Copy(env, head, head_len));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
  }
  void OnPing(const uint8_t* p, size_t n) { Add("ping").Set("payload", Napi::Buffer<uint8_t>::Copy(env, p, n)); }
  void OnPong() { Add("pong"); }
  void OnClose(int code) { Add("close").Set("code", code); }
  void OnProtocolError(const char* why) { Add("error").Set("message", why); }
};

// parseFramesForTest(chunks: Buffer[], nowMicros: number): events, feeding
// the chunks one by one to one parser as reads would.
Napi::Value ParseFramesForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray()) ThrowTypeError(env, "The \"chunks\" argument must be an array of Buffers.");
  double now = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().DoubleValue() : 0;
  Napi::Array chunks = info[0].As<Napi::Array>();
  RecordingEvents h{env, Napi::Array::New(env), static_cast<uint64_t>(now)};
  auto parser = std::make_unique<FrameParser<RecordingEvents>>();
  for (uint32_t k = 0; k < chunks.Length(); k++) {
    Napi::Value v = chunks.Get(k);
    if (!v.IsTypedArray()) ThrowTypeError(env, "The \"chunks\" argument must be an array of Buffers.");
    Napi::TypedArray t = v.As<Napi::TypedArray>();
    const uint8_t* base = static_cast<const uint8_t*>(t.ArrayBuffer().Data()) + t.ByteOffset();
    if (!parser->Feed(base, t.ByteLength(), h)) break;
  }
  return h.events;
}

// The bucket a value lands in and that bucket's lowest value, for tests of
// the histogram layout.
Napi::Value HistogramBucketForTest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double v = IntegerArg(info, 0, "value", 0, 9007199254740991.0);
  size_t index = LatencyHistogram::Index(static_cast<uint64_t>(v));
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", Napi::Number::New(env, static_cast<double>(index)));
  o.Set("lowest", Napi::Number::New(env, static_cast<double>(LatencyHistogram::LowestValue(index))));
  return o;
}

Napi::Value ClockMicros(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(RealtimeMicros()));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("LoadGen", LoadGen::Define(env));
  exports.Set("parseFramesForTest", Napi::Function::New(env, ParseFramesForTest));
  exports.Set("histogramBucketForTest", Napi::Function::New(env, HistogramBucketForTest));
  exports.Set("clockMicros", Napi::Function::New(env, ClockMicros));
  return exports;
}

}  // namespace
}  // namespace loadgen
}  // namespace c10m

static Napi::Object InitLoadgen(Napi::Env env, Napi::Object exports) { return c10m::loadgen::Init(env, exports); }

NODE_API_MODULE(c10m_loadgen, InitLoadgen)
