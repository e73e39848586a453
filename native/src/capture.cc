// Capture: frames from an AF_PACKET ring to a JavaScript callback, one synchronous call per
// frame, as libpcap's pcap_dispatch() hands them out: each frame is copied into the one buffer
// the JavaScript side owns (with a VLAN tag the kernel stripped put back, as libpcap does) and
// the callback gets its length, 0 for a frame cut short. Nothing is allocated per frame, here or
// in JavaScript. The ring slot goes back to the kernel before the callback runs.
//
// Super-frames (TSO/GRO, up to 64 KiB): the ring and the send socket have PACKET_VNET_HDR, as
// the fast path's (afpacket.h RxRing): a frame larger than a ring slot is read whole from the
// socket (PACKET_COPY_THRESH), its virtio-net header is copied into `vnet` before the callback
// runs, and send() passes one on, so a super-frame leaves whole and the kernel segments it.
// Without a `vnet` array, a super-frame cannot be passed on: it is delivered as cut (length 0,
// counted truncated), and a partial checksum is completed here.
//
//   const c = new addon.Capture();
//   c.open(iface, filter, ringBytes?)  → { mac, mtu, frameSize, frames, loopback, vnet }
//   c.start(buffer, (len) => …, vnet?) // uv_poll on the ring: frames arrive as the loop runs;
//                                      // buffer: kMaxFrame (65600) bytes for every frame whole
//   c.send(buf, len, vnet?) → boolean  // one frame now, through the interface's qdisc
//   c.setFilter(filter); c.stats(); c.stop(); c.close();
#include "capture.h"

#include <linux/if_packet.h>

#include <cstring>
#include <string>

#include "afpacket.h"
#include "ring_poll.h"

namespace lbd {

namespace {

// Frames per wake-up before the event loop gets its turn (timers, admin socket, metrics); the
// poll is level-triggered, so what is left is taken on the next turn.
constexpr uint32_t kWakeBudget = 1024;
// Frames per handle scope. Node-API allocates each scope on the heap, so not one per frame; each
// call leaves two handles (its argument, its result), and 256 calls stay within one V8 handle
// block.
constexpr uint32_t kScopeFrames = 256;
constexpr uint32_t kVlanOffset = 12;  // the tag goes after the two MACs
constexpr uint32_t kVlanLen = 4;
constexpr uint16_t kTpid8021q = 0x8100;  // ETH_P_8021Q, when the kernel does not say which TPID

Napi::Value fail(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, "lbd_native: " + msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

class Capture : public Napi::ObjectWrap<Capture>, RingPoll::Client {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Capture(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<Capture>(info), env_(info.Env()), rp_(info.Env(), this, "lbd_native.ring") {}
  ~Capture() override {
    pinned_ = false;  // collected: nothing holds the wrapper any more
    teardown();
  }

 private:
  void onReadable() override;  // the ring's wake-up: every frame ready, each to JavaScript
  void onPollLost() override { stopPoll(); }

  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SetFilter(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  uint32_t take(const tpacket2_hdr* h, uint32_t status);
  uint32_t header(const uint8_t* vnet, uint32_t len, bool vlan);
  bool deliver(uint32_t len);
  bool enterJs();
  void closeChunk();
  void leaveJs();
  void stopPoll();
  void unpin();
  void teardown();

  napi_env env_;
  Interface itf_;
  RingPoll rp_;  // the ring, its uv_poll, the wake-up's scopes
  TxSocket tx_;
  // While polling, the wrapper is pinned: a started capture must not stop because the
  // JavaScript object that started it was dropped.
  bool pinned_ = false;

  // The JavaScript side: the frame buffer and the callback, held for as long as polling runs.
  napi_ref bufRef_ = nullptr;
  napi_ref fnRef_ = nullptr;
  uint8_t* buf_ = nullptr;
  size_t bufLen_ = 0;
  napi_ref vnetRef_ = nullptr;
  uint8_t* vnetOut_ = nullptr;  // the frame's virtio-net header for JavaScript (null: not asked for)

  // One wake-up: its scopes (rp_) are opened by its first frame.
  napi_handle_scope chunk_ = nullptr;  // the handles of the last kScopeFrames calls
  uint32_t chunkLeft_ = 0;
  napi_value fn_ = nullptr;
  napi_value recv_ = nullptr;

  double frames_ = 0;
  double truncated_ = 0;
  double wakeups_ = 0;
  double sendFailed_ = 0;
  double superFrames_ = 0;
  double copied_ = 0;
  double csumFixed_ = 0;
};

/**
 * Completes a partial checksum as the kernel's skb_checksum_help() does: the field at
 * start + offset holds the pseudo-header's sum; the sum from start to the end goes there.
 */
void completePartial(uint8_t* p, uint32_t len, uint32_t start, uint32_t offset) {
  if (start >= len || uint64_t(start) + offset + 2 > len) return;
  uint64_t sum = 0;
  uint32_t i = start;
  for (; i + 1 < len; i += 2) sum += (uint32_t(p[i]) << 8) | p[i + 1];
  if (i < len) sum += uint32_t(p[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t cs = static_cast<uint16_t>(~sum & 0xffff);
  if (cs == 0) cs = 0xffff;  // CSUM_MANGLED_0
  p[start + offset] = static_cast<uint8_t>(cs >> 8);
  p[start + offset + 1] = static_cast<uint8_t>(cs);
}

inline uint16_t u16h(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

Napi::Function Capture::Init(Napi::Env env) {
  return DefineClass(env, "Capture",
                     {
                         InstanceMethod("open", &Capture::Open),
                         InstanceMethod("start", &Capture::Start),
                         InstanceMethod("stop", &Capture::Stop),
                         InstanceMethod("close", &Capture::Close),
                         InstanceMethod("send", &Capture::Send),
                         InstanceMethod("setFilter", &Capture::SetFilter),
                         InstanceMethod("stats", &Capture::Stats),
                     });
}

// ---- the per-frame steps ------------------------------------------------------------------

/** Copies the frame into the JavaScript buffer; its length there, 0 when it does not fit whole. */
uint32_t Capture::take(const tpacket2_hdr* h, uint32_t status) {
  const bool vlan = (status & TP_STATUS_VLAN_VALID) || h->tp_vlan_tci != 0;
  const uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid : kTpid8021q;
  const uint16_t tci = h->tp_vlan_tci;
  const uint8_t tag[kVlanLen] = {uint8_t(tpid >> 8), uint8_t(tpid), uint8_t(tci >> 8), uint8_t(tci)};
  RxRing& ring = rp_.ring;
  if (status & TP_STATUS_COPY) {
    // Larger than the slot: the whole frame is next in the socket's queue. Read with room for
    // the tag, which then goes in after the MACs.
    uint8_t vnet[kVnetLen] = {0};
    const uint32_t room = bufLen_ > kVlanLen ? static_cast<uint32_t>(bufLen_ - kVlanLen) : 0;
    uint32_t len = ring.readCopy(vnet, buf_, vlan ? room : static_cast<uint32_t>(bufLen_));
    if (len == 0) return 0;
    copied_ += 1;
    if (vlan && len >= kVlanOffset) {
      std::memmove(buf_ + kVlanOffset + kVlanLen, buf_ + kVlanOffset, len - kVlanOffset);
      std::memcpy(buf_ + kVlanOffset, tag, kVlanLen);
      len += kVlanLen;
    }
    return header(ring.vnet() ? vnet : nullptr, len, vlan && len >= kVlanOffset + kVlanLen);
  }
  const uint8_t* p = reinterpret_cast<const uint8_t*>(h) + h->tp_mac;
  const uint32_t len = h->tp_snaplen;
  if (len < h->tp_len || uint64_t(h->tp_mac) + len > ring.frameSize()) return 0;  // cut by the slot
  const uint8_t* vnet = ring.vnet() ? ring.vnetOf(h) : nullptr;
  if (!vlan || len < kVlanOffset) {
    if (len > bufLen_) return 0;
    std::memcpy(buf_, p, len);
    return header(vnet, len, false);
  }
  if (len + kVlanLen > bufLen_) return 0;
  std::memcpy(buf_, p, kVlanOffset);
  std::memcpy(buf_ + kVlanOffset, tag, kVlanLen);
  std::memcpy(buf_ + kVlanOffset + kVlanLen, p + kVlanOffset, len - kVlanOffset);
  return header(vnet, len + kVlanLen, true);
}

/**
 * The frame in buf_ (len bytes) with its virtio-net header (null: the ring has none): the header
 * to JavaScript (its offsets moved past a VLAN tag put back), or, when JavaScript did not ask
 * for it, a partial checksum completed and a super-frame cut (0: it cannot be passed on whole).
 */
uint32_t Capture::header(const uint8_t* vnet, uint32_t len, bool vlan) {
  uint8_t v[kVnetLen] = {0};
  if (vnet != nullptr) std::memcpy(v, vnet, kVnetLen);
  if (v[kVnetGsoType] != kGsoNone) superFrames_ += 1;
  if (vlan) {
    for (uint32_t off : {kVnetHdrLen, kVnetCsumStart}) {
      const uint16_t x = u16h(v + off);
      if (x == 0) continue;
      const uint16_t y = static_cast<uint16_t>(x + kVlanLen);
      std::memcpy(v + off, &y, 2);
    }
  }
  if (vnetOut_ != nullptr) {
    std::memcpy(vnetOut_, v, kVnetLen);
    return len;
  }
  if (v[kVnetGsoType] != kGsoNone) return 0;
  if (v[kVnetFlags] & kVnetNeedsCsum) {
    completePartial(buf_, len, u16h(v + kVnetCsumStart), u16h(v + kVnetCsumOffset));
    csumFixed_ += 1;
  }
  return len;
}

/** One synchronous call into JavaScript; false when it threw (the error is kept for leaveJs). */
bool Capture::deliver(uint32_t len) {
  if (!enterJs()) return false;
  if (chunkLeft_ == 0) {
    closeChunk();
    napi_open_handle_scope(env_, &chunk_);
    chunkLeft_ = kScopeFrames;
  }
  chunkLeft_--;
  napi_value arg, ret;
  napi_create_uint32(env_, len, &arg);  // a small integer: no heap object
  if (napi_call_function(env_, recv_, fn_, 1, &arg, &ret) == napi_ok) return true;
  closeChunk();  // the error is kept in the wake-up's scope, which outlives this one
  if (rp_.pendingError == nullptr) napi_get_and_clear_last_exception(env_, &rp_.pendingError);
  return false;
}

void Capture::closeChunk() {
  if (chunk_ != nullptr) napi_close_handle_scope(env_, chunk_);
  chunk_ = nullptr;
  chunkLeft_ = 0;
}

bool Capture::enterJs() {
  if (rp_.pendingError != nullptr) return false;
  if (!rp_.inScopes()) {
    rp_.openScopes();
    napi_get_reference_value(env_, fnRef_, &fn_);
    napi_get_undefined(env_, &recv_);
  }
  return true;
}

void Capture::leaveJs() {
  rp_.inLive = false;
  if (!rp_.inScopes()) return;
  closeChunk();
  fn_ = recv_ = nullptr;
  rp_.closeScopes();
}

void Capture::onReadable() {
  RxRing& ring = rp_.ring;
  if (!ring.isOpen() || rp_.closeRequested || buf_ == nullptr) return;
  rp_.inLive = true;
  rp_.pendingError = nullptr;
  wakeups_ += 1;
  const uint32_t hdrLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));
  // Not polling: stop() from a callback of this wake-up; closeRequested: close().
  for (uint32_t budget = kWakeBudget; budget > 0 && rp_.polling() && !rp_.closeRequested; budget--) {
    tpacket2_hdr* h = ring.frame(ring.cursor);
    const uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if ((st & TP_STATUS_USER) == 0) break;
    ring.cursor = ring.cursor + 1 == ring.frameCount() ? 0 : ring.cursor + 1;
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(h) + hdrLen);
    // On lo every frame shows up twice, going out and coming in: keep one, as libpcap does.
    const bool twice = itf_.loopback && sll->sll_pkttype == PACKET_OUTGOING;
    uint32_t len = 0;
    if (!twice) {
      len = take(h, st);
    } else if (st & TP_STATUS_COPY) {
      uint8_t skip[64];
      (void)ring.readCopy(nullptr, skip, sizeof skip);  // its whole copy: the queue stays in step
    }
    __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    if (twice) continue;
    frames_ += 1;
    if (len == 0) {
      truncated_ += 1;
      // A frame not taken has no header: not the previous frame's.
      if (vnetOut_ != nullptr) std::memset(vnetOut_, 0, kVnetLen);
    }
    if (!deliver(len)) break;
  }
  leaveJs();
  if (rp_.closeRequested) teardown();
  // stop() or close() from a callback: only now may the wrapper go (the last use of `this`).
  if (!rp_.polling()) unpin();
}

// ---- the methods --------------------------------------------------------------------------

Napi::Value Capture::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    return fail(env, "open(iface: string, filter: string, ringBytes?: number)");
  if (rp_.ring.isOpen()) return fail(env, "open() twice");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string filter = info[1].As<Napi::String>().Utf8Value();
  const size_t ringBytes = RingPoll::ringBytesArg(info, 2);
  std::string err;
  if (!lookupInterface(name, &itf_, &err, true)) return fail(env, err);
  if (!rp_.open(itf_, filter, ringBytes, false, &err)) return fail(env, err);
  if (!tx_.open(itf_, false, &err)) {
    rp_.ring.close();
    return fail(env, "send socket on \"" + name + "\": " + err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("mac", Napi::Buffer<uint8_t>::Copy(env, itf_.mac, 6));
  r.Set("mtu", itf_.mtu);
  r.Set("frameSize", rp_.ring.frameSize());
  r.Set("frames", rp_.ring.frameCount());
  r.Set("loopback", itf_.loopback);
  r.Set("vnet", rp_.ring.vnet() && tx_.vnet());
  return r;
}

Napi::Value Capture::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!rp_.ring.isOpen()) return fail(env, "start() before open()");
  if (rp_.polling()) return fail(env, "start() twice");
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsFunction())
    return fail(env, "start(buffer: Uint8Array, onFrame: (len: number) => void, vnet?: Uint8Array)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array || ta.ByteLength() < 64)
    return fail(env, "start: the buffer must be a Uint8Array of 64 bytes or more");
  Napi::Uint8Array vnet;
  if (info.Length() >= 3 && !info[2].IsUndefined()) {
    if (!info[2].IsTypedArray() || info[2].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array ||
        info[2].As<Napi::TypedArray>().ByteLength() < kVnetLen)
      return fail(env, "start: vnet must be a Uint8Array of 10 bytes");
    vnet = info[2].As<Napi::Uint8Array>();
  }
  std::string err;
  if (!rp_.start(&err)) return fail(env, err);
  auto buf = ta.As<Napi::Uint8Array>();
  buf_ = buf.Data();  // the backing store of a Buffer does not move
  bufLen_ = buf.ByteLength();
  napi_create_reference(env, buf, 1, &bufRef_);
  napi_create_reference(env, info[1], 1, &fnRef_);
  if (!vnet.IsEmpty()) {
    vnetOut_ = vnet.Data();
    napi_create_reference(env, vnet, 1, &vnetRef_);
  }
  // Started again from its own callback after stop(): it is still pinned, and one Ref() must
  // meet one Unref().
  if (!pinned_) Ref();
  pinned_ = true;
  return env.Undefined();
}

void Capture::stopPoll() {
  rp_.stop();
  if (bufRef_ != nullptr) napi_delete_reference(env_, bufRef_);
  if (fnRef_ != nullptr) napi_delete_reference(env_, fnRef_);
  if (vnetRef_ != nullptr) napi_delete_reference(env_, vnetRef_);
  bufRef_ = fnRef_ = vnetRef_ = nullptr;
  buf_ = nullptr;
  bufLen_ = 0;
  vnetOut_ = nullptr;
  // From a callback, onReadable unpins once the wake-up is over: JavaScript still runs in it
  // (the rest of the callback, then microtasks), and a collected wrapper would free `this`.
  if (!rp_.inLive) unpin();
}

void Capture::unpin() {
  if (!pinned_) return;
  pinned_ = false;
  Unref();
}

void Capture::teardown() {
  stopPoll();
  rp_.close();
  tx_.close();
}

Napi::Value Capture::Stop(const Napi::CallbackInfo& info) {
  // From a callback the wake-up ends after that frame (polling has stopped); the buffer stays
  // ours until then because the loop checks rp_.polling() before taking the next frame.
  stopPoll();
  return info.Env().Undefined();
}

Napi::Value Capture::Close(const Napi::CallbackInfo& info) {
  if (rp_.inLive) {
    rp_.closeRequested = true;  // from a callback: the wake-up ends, then everything is freed
    stopPoll();
  } else {
    teardown();
  }
  return info.Env().Undefined();
}

Napi::Value Capture::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    return fail(env, "send(buf: Uint8Array, len: number, vnet?: Uint8Array)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return fail(env, "send: buf must be a Uint8Array");
  auto buf = ta.As<Napi::Uint8Array>();
  const uint8_t* vnet = nullptr;
  if (info.Length() >= 3 && info[2].IsTypedArray()) {
    auto vta = info[2].As<Napi::TypedArray>();
    if (vta.TypedArrayType() != napi_uint8_array || vta.ByteLength() < kVnetLen)
      return fail(env, "send: vnet must be a Uint8Array of 10 bytes");
    vnet = vta.As<Napi::Uint8Array>().Data();
  }
  const double l = info[1].As<Napi::Number>().DoubleValue();
  bool ok = l >= 0 && l <= double(buf.ByteLength()) && tx_.sendOne(buf.Data(), static_cast<uint32_t>(l), vnet);
  if (!ok) sendFailed_ += 1;
  return Napi::Boolean::New(env, ok);
}

Napi::Value Capture::SetFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "setFilter(filter: string)");
  std::string err;
  if (!rp_.setFilter(info[0].As<Napi::String>().Utf8Value(), &err)) return fail(env, err);
  return env.Undefined();
}

Napi::Value Capture::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("frames", frames_);
  o.Set("truncated", truncated_);
  o.Set("superFrames", superFrames_);
  o.Set("copied", copied_);
  o.Set("csumFixed", csumFixed_);
  o.Set("wakeups", wakeups_);
  rp_.setStats(o);  // ringPackets, ringDrops, pollErrors
  o.Set("sendFailed", sendFailed_);
  o.Set("sendSyscalls", double(tx_.syscalls));
  o.Set("lastSendErrno", tx_.lastErrno);
  o.Set("live", rp_.ring.isOpen());
  o.Set("polling", rp_.polling());
  return o;
}

}  // namespace

Napi::Function initCapture(Napi::Env env) { return Capture::Init(env); }

}  // namespace lbd
