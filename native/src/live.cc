// The Dataplane's live path: openLive() opens the AF_PACKET RX ring on the capture interface and
// the send sockets, start() puts a uv_poll on the ring in Node's event loop (both through the
// RingPoll, ring_poll.h), and each wake-up (onReadable) takes every frame ready through the fast
// path, in batches flushed with sendmmsg, optionally busy-polling the ring before it goes back to
// epoll (setBusyPoll). Kept apart from addon.cc: this is the code libuv runs, with the methods
// that set it up and stop it.
#include <linux/if_packet.h>
#include <napi.h>
#include <time.h>

#include <string>

#include "afpacket.h"
#include "dataplane.h"
#include "fastpath.h"
#include "ring_poll.h"

namespace lbd {

namespace {

constexpr uint32_t kWakeBudget = 4096;  // frames per uv_poll wake-up before yielding to the loop
// With busy-poll on, a wake-up also yields after this long, frames or not: a steady trickle
// (one frame per spin) would otherwise keep the event loop (timers, admin, metrics) waiting.
constexpr uint64_t kMaxBusyWakeNs = 1000000;
constexpr uint64_t kMaxBusyPollNs = kMaxBusyWakeNs;  // a longer spin could not happen

uint64_t realtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

// A ring timestamp further from the wake-up than this is not a receive time (a clock step, a
// sender's delivery time carried by the skb): such a frame is left out of the wait's sum.
constexpr uint64_t kMaxPlausibleWaitNs = 10ull * 1000000000ull;

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

void Dataplane::onReadable() {
  RxRing& ring = rp_.ring;
  if (!ring.isOpen() || !fp_.attached || rp_.closeRequested) return;
  rp_.inLive = true;
  rp_.pendingError = nullptr;
  wakeups_ += 1;
  // Where a frame's time goes: how long it sat in the ring until taken (the kernel's receive
  // time, CLOCK_REALTIME, against the wake-up's start, or a later reading for a frame that came
  // in meanwhile), and how long the wake-up works.
  const uint64_t wakeNs = monotonicNs();
  uint64_t takeRealNs = realtimeNs();
  tpacket2_hdr* pending[kBatch];
  uint32_t np = 0;
  const uint32_t hdrLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));
  const uint32_t frameSize = ring.frameSize();
  // closeRequested: close() from an upcall of this wake-up; the frames taken so far are
  // flushed and handed back, the rest stay in the ring for the socket's close to discard.
  // Busy-poll (config busy_poll): when the ring runs dry, send what was taken, then keep looking
  // for up to spinNs_ before going back to epoll: at low load the next frame usually comes
  // within a few tens of µs, and catching it here saves the sleep and wake-up (latency).
  uint64_t idleSince = 0;
  const uint64_t wakeDeadline = spinNs_ != 0 ? monotonicNs() + kMaxBusyWakeNs : 0;
  // Not polling: stop() from an upcall of this wake-up.
  for (uint32_t budget = kWakeBudget; budget > 0 && !rp_.closeRequested && rp_.polling();) {
    tpacket2_hdr* h = ring.frame(ring.cursor);
    const uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if ((st & TP_STATUS_USER) == 0) {
      if (spinNs_ == 0) break;
      const uint64_t now = monotonicNs();
      if (idleSince == 0) {
        fp_.flush(egressSink_);
        for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        np = 0;
        copyUsed_ = 0;
        idleSince = now;
      }
      if (now - idleSince >= spinNs_ || now >= wakeDeadline) break;
      cpuRelax();
      continue;
    }
    if (idleSince != 0) busyPollCatches_ += 1;
    idleSince = 0;
    budget--;
    ring.cursor = ring.cursor + 1 == ring.frameCount() ? 0 : ring.cursor + 1;
    pending[np++] = h;
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(h) + hdrLen);
    // A frame larger than the slot (a super-frame): the whole one is next in the socket's
    // queue (PACKET_COPY_THRESH), read into a copy buffer that waits for the batch's send.
    // Taken whatever the frame's fate, so that the queue stays in step with the ring.
    uint8_t* frame = reinterpret_cast<uint8_t*>(h) + h->tp_mac;
    const uint8_t* vnet = ring.vnet() ? ring.vnetOf(h) : nullptr;
    uint32_t len = h->tp_snaplen;
    if (st & TP_STATUS_COPY) {
      if (copyUsed_ == kCopyBufs) {
        fp_.flush(egressSink_);
        copyUsed_ = 0;
      }
      CopyBuf& b = copyBufs_[copyUsed_++];
      len = ring.readCopy(b.vnet, b.frame, sizeof b.frame);
      frame = b.frame;
      vnet = ring.vnet() ? b.vnet : nullptr;
      if (len != 0) copied_ += 1;
    } else if (len < h->tp_len || uint64_t(h->tp_mac) + len > frameSize) {
      len = 0;
    }
    if (sll->sll_pkttype != PACKET_OUTGOING) {
      liveFrames_ += 1;
      // A frame that came in while this wake-up worked is later than its start: its wait ends
      // when it is taken (the clock read again only for such frames).
      const uint64_t rxNs = uint64_t(h->tp_sec) * 1000000000u + h->tp_nsec;
      if (rxNs > takeRealNs) takeRealNs = realtimeNs();
      if (rxNs <= takeRealNs && takeRealNs - rxNs < kMaxPlausibleWaitNs) {
        ringWaitNs_ += double(takeRealNs - rxNs);
        ringWaitFrames_ += 1;
      }
      // A frame cut short (by the ring's frame size with no whole copy: the socket's receive
      // buffer was full) is as truncated as one cut by libpcap's buffer on the TypeScript path:
      // length 0, counted truncated, never forwarded (and without a header: a failed read's is stale).
      if (len == 0) {
        truncated_ += 1;
        vnet = nullptr;
      }
      uint32_t status = 0;
      if (st & TP_STATUS_CSUMNOTREADY) status |= kStatusCsumNotReady;
      if ((st & TP_STATUS_VLAN_VALID) || h->tp_vlan_tci != 0) status |= kStatusVlan;
      if (fp_.process(frame, len, status, vnet) < 0) {
        if (rp_.pendingError == nullptr) napi_get_and_clear_last_exception(env_, &rp_.pendingError);
        break;
      }
    }
    if (fp_.queued == kBatch || np == kBatch) {
      fp_.flush(egressSink_);
      for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      np = 0;
      copyUsed_ = 0;
    }
  }
  fp_.flush(egressSink_);
  copyUsed_ = 0;
  for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  leaveJs();
  busyNs_ += double(monotonicNs() - wakeNs);
  if (rp_.closeRequested) teardown();
}

Napi::Value Dataplane::OpenLive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
    return throwError(env, "openLive(capture: string, egress: string, filter: string, ringBytes?: number)");
  if (rp_.ring.isOpen()) return throwError(env, "openLive() twice");
  std::string capture = info[0].As<Napi::String>().Utf8Value();
  std::string egress = info[1].As<Napi::String>().Utf8Value();
  std::string filter = info[2].As<Napi::String>().Utf8Value();
  const size_t ringBytes = RingPoll::ringBytesArg(info, 3);
  std::string err;
  if (!lookupInterface(capture, &capIf_, &err)) return throwError(env, err);
  if (!lookupInterface(egress, &egIf_, &err)) return throwError(env, err);
  if (!rp_.open(capIf_, filter, ringBytes, true, &err)) return throwError(env, err);
  if (!txEgress_.open(egIf_, true, &err)) {
    rp_.ring.close();
    return throwError(env, "egress on \"" + egress + "\": " + err);
  }
  if (egIf_.index != capIf_.index && !txCapture_.open(capIf_, true, &err)) {
    rp_.ring.close();
    txEgress_.close();
    return throwError(env, "send socket on \"" + capture + "\": " + err);
  }
  // Super-frames pass whole only when the ring gives their header and every send socket takes it.
  fp_.txVnet = rp_.ring.vnet() && txEgress_.vnet() && (!txCapture_.isOpen() || txCapture_.vnet());
  if (copyBufs_.empty()) copyBufs_.resize(kCopyBufs);
  copyUsed_ = 0;
  Napi::Object r = Napi::Object::New(env);
  r.Set("captureMac", Napi::Buffer<uint8_t>::Copy(env, capIf_.mac, 6));
  r.Set("vnet", fp_.txVnet);
  r.Set("egressMac", Napi::Buffer<uint8_t>::Copy(env, egIf_.mac, 6));
  r.Set("captureMtu", capIf_.mtu);
  r.Set("frameSize", rp_.ring.frameSize());
  r.Set("frames", rp_.ring.frameCount());
  return r;
}

Napi::Value Dataplane::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!rp_.ring.isOpen()) return throwError(env, "start() before openLive()");
  if (!fp_.attached) return throwError(env, "start() before attach()");
  if (rp_.polling()) return env.Undefined();
  std::string err;
  if (!rp_.start(&err)) return throwError(env, err);
  return env.Undefined();
}

Napi::Value Dataplane::SetBusyPoll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) return throwError(env, "setBusyPoll(microseconds: number)");
  const double us = info[0].As<Napi::Number>().DoubleValue();
  if (!(us >= 0) || us * 1000.0 > double(kMaxBusyPollNs)) return throwError(env, "setBusyPoll: 0 to 1000 microseconds");
  spinNs_ = uint64_t(us * 1000.0);
  return env.Undefined();
}

Napi::Value Dataplane::Stop(const Napi::CallbackInfo& info) {
  rp_.stop();
  return info.Env().Undefined();
}

}  // namespace lbd
