// The benchsub load generator's building blocks, free of sockets so that the
// tests can drive them: a log-linear latency histogram and the WebSocket
// frame parser for server-to-client frames.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace c10m {
namespace loadgen {

// HdrHistogram's bucket layout for 3 significant digits and a unit of 1
// (2048 sub-buckets, each bucket after the first twice as wide as the one
// before), so that every bucket maps onto exactly one bucket of
// hdr-histogram-js built with { lowestDiscernibleValue: 1,
// numberOfSignificantValueDigits: 3 }. Values above 2^41 land in the last
// bucket.
class LatencyHistogram {
 public:
  static constexpr int kMaxShift = 30;
  static constexpr size_t kSize = 2048 + kMaxShift * 1024;

  LatencyHistogram() : counts_(kSize, 0) {}

  void Record(uint64_t value) {
    counts_[Index(value)]++;
    total_++;
  }

  static size_t Index(uint64_t value) {
    if (value < 2048) return static_cast<size_t>(value);
    int msb = 63 - __builtin_clzll(value);
    int shift = msb - 10;
    if (shift > kMaxShift) return kSize - 1;
    return 2048 + static_cast<size_t>(shift - 1) * 1024 + static_cast<size_t>((value >> shift) - 1024);
  }

  static uint64_t LowestValue(size_t index) {
    if (index < 2048) return index;
    size_t shift = (index - 2048) / 1024 + 1;
    uint64_t sub = (index - 2048) % 1024 + 1024;
    return sub << shift;
  }

  uint64_t total() const { return total_; }

  // Appends (lowest value, count) of every non-empty bucket to `out`, then
  // empties the histogram. Linear in kSize; called about once a second.
  void TakeInto(std::vector<double>* out) {
    if (total_ == 0) return;
    for (size_t i = 0; i < kSize; i++) {
      if (counts_[i] == 0) continue;
      out->push_back(static_cast<double>(LowestValue(i)));
      out->push_back(static_cast<double>(counts_[i]));
      counts_[i] = 0;
    }
    total_ = 0;
  }

 private:
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
};

// First bytes of a binary delivery frame (protocol/frame.ts): magic 0xC1,
// version, flags, topic length, epoch u32, seq u64, ts micros u64, all
// big-endian.
constexpr uint8_t kDeliveryMagic = 0xC1;
constexpr size_t kDeliveryHeaderBytes = 24;
constexpr size_t kDeliveryTsOffset = 16;

inline uint64_t ReadBe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
  return v;
}

// The server-to-client frame parser: a state machine fed any split of the
// input (one byte at a time is as good as a whole read), never copying more
// than the first kHeadBytes of a data message and the payload of a control
// frame. Server frames are never masked (RFC 6455 5.1), so a masked frame is
// a protocol error, as are reserved bits and opcodes and malformed control
// frames.
//
// Handler must have:
//   void OnDelivery(uint64_t ts_micros, uint64_t message_bytes);
//   void OnDataMessage(int opcode, const uint8_t* head, size_t head_len, uint64_t message_bytes);
//   void OnPing(const uint8_t* payload, size_t len);
//   void OnPong();
//   void OnClose(int code);   // 1005 when the close frame has no code
//   void OnProtocolError(const char* why);
template <class Handler>
class FrameParser {
 public:
  // 96: enough for a ping reply's reconnectWindowMs (reconnect mode reads it).
  static constexpr size_t kHeadBytes = 96;

  // Parses `n` bytes; false once the stream is broken (OnProtocolError was
  // called, and every later call returns false at once).
  bool Feed(const uint8_t* p, size_t n, Handler& h) {
    while (n > 0) {
      switch (state_) {
        case kOpcode: {
          uint8_t b = *p++;
          n--;
          fin_ = (b & 0x80) != 0;
          opcode_ = b & 0x0f;
          if (b & 0x70) return Fail(h, "reserved bits set in a frame header (no extension was negotiated)");
          if (opcode_ >= 8) {
            if (opcode_ > 10) return Fail(h, "reserved control opcode");
            if (!fin_) return Fail(h, "fragmented control frame");
          } else if (opcode_ == 0) {
            if (message_opcode_ == 0) return Fail(h, "continuation frame outside a fragmented message");
          } else if (opcode_ == 1 || opcode_ == 2) {
            if (message_opcode_ != 0) return Fail(h, "new data frame inside a fragmented message");
            message_opcode_ = opcode_;
            message_bytes_ = 0;
            head_len_ = 0;
          } else {
            return Fail(h, "reserved data opcode");
          }
          state_ = kLength;
          break;
        }
        case kLength: {
          uint8_t b = *p++;
          n--;
          if (b & 0x80) return Fail(h, "masked frame from the server");
          uint8_t len7 = b & 0x7f;
          if (opcode_ >= 8 && len7 > 125) return Fail(h, "control frame longer than 125 bytes");
          remaining_ = 0;
          if (len7 == 126) {
            ext_left_ = 2;
            state_ = kExtendedLength;
          } else if (len7 == 127) {
            ext_left_ = 8;
            state_ = kExtendedLength;
          } else {
            remaining_ = len7;
            if (!BeginPayload(h)) return false;
          }
          break;
        }
        case kExtendedLength: {
          remaining_ = (remaining_ << 8) | *p++;
          n--;
          if (--ext_left_ == 0) {
            if (remaining_ >> 63) return Fail(h, "64-bit frame length with the most significant bit set");
            if (!BeginPayload(h)) return false;
          }
          break;
        }
        case kPayload: {
          size_t take = remaining_ < n ? static_cast<size_t>(remaining_) : n;
          Consume(p, take);
          p += take;
          n -= take;
          remaining_ -= take;
          if (remaining_ == 0 && !EndFrame(h)) return false;
          break;
        }
        case kBroken:
          return false;
      }
    }
    return state_ != kBroken;
  }

  bool broken() const { return state_ == kBroken; }

 private:
  enum State : uint8_t { kOpcode, kLength, kExtendedLength, kPayload, kBroken };

  bool Fail(Handler& h, const char* why) {
    state_ = kBroken;
    h.OnProtocolError(why);
    return false;
  }

  bool BeginPayload(Handler& h) {
    control_len_ = 0;
    if (remaining_ == 0) return EndFrame(h);
    state_ = kPayload;
    return true;
  }

  void Consume(const uint8_t* p, size_t take) {
    if (opcode_ >= 8) {
      std::memcpy(control_ + control_len_, p, take);
      control_len_ += take;
      return;
    }
    if (head_len_ < kHeadBytes) {
      size_t copy = std::min(take, kHeadBytes - head_len_);
      std::memcpy(head_ + head_len_, p, copy);
      head_len_ += copy;
    }
    message_bytes_ += take;
  }

  bool EndFrame(Handler& h) {
    state_ = kOpcode;
    switch (opcode_) {
      case 8:
        if (control_len_ == 1) return Fail(h, "close frame with a 1-byte payload");
        h.OnClose(control_len_ >= 2 ? (control_[0] << 8) | control_[1] : 1005);
        return true;
      case 9:
        h.OnPing(control_, control_len_);
        return true;
      case 10:
        h.OnPong();
        return true;
      default:
        break;
    }
    if (!fin_) return true;
    int op = message_opcode_;
    message_opcode_ = 0;
    if (op == 2 && head_len_ >= kDeliveryHeaderBytes && head_[0] == kDeliveryMagic) {
      h.OnDelivery(ReadBe64(head_ + kDeliveryTsOffset), message_bytes_);
    } else {
      h.OnDataMessage(op, head_, head_len_, message_bytes_);
    }
    return true;
  }

  State state_ = kOpcode;
  bool fin_ = false;
  uint8_t opcode_ = 0;
  // Opcode of the data message in progress (1 text, 2 binary), 0 between messages.
  uint8_t message_opcode_ = 0;
  uint8_t ext_left_ = 0;
  uint8_t head_len_ = 0;
  uint8_t control_len_ = 0;
  uint64_t remaining_ = 0;
  uint64_t message_bytes_ = 0;
  uint8_t head_[kHeadBytes];
  uint8_t control_[125];
};

}  // namespace loadgen
}  // namespace c10m
