// Capture: frames from an AF_PACKET ring to a JavaScript callback, one synchronous call per
// frame, as libpcap's pcap_dispatch() hands them out: each frame is copied into the one buffer
// the JavaScript side owns (with a VLAN tag the kernel stripped put back, as libpcap does) and
// the callback gets its length, 0 for a frame the ring slot cut short. Nothing is allocated per
// frame, here or in JavaScript. The ring slot goes back to the kernel before the callback runs.
//
//   const c = new addon.Capture();
//   c.open(iface, filter, ringBytes?)  → { mac, mtu, frameSize, frames, loopback }
//   c.start(buffer, (len) => …)        // uv_poll on the ring: frames arrive as the loop runs
//   c.send(buf, len) → boolean         // one frame now, through the interface's qdisc
//   c.setFilter(filter); c.stats(); c.stop(); c.close();
#include "capture.h"

#include <linux/if_packet.h>

#include <cstring>
#include <string>
#include <vector>

#include "afpacket.h"
#include "libuv.h"

namespace lbd {

namespace {

// Frames per wake-up before the event loop gets its turn (timers, admin socket, metrics); the
// poll is level-triggered, so what is left is taken on the next turn.
constexpr uint32_t kWakeBudget = 1024;
// Frames per handle scope. Node-API allocates each scope on the heap, so not one per frame; each
// call leaves two handles (its argument, its result), and 256 calls stay within one V8 handle
// block.
constexpr uint32_t kScopeFrames = 256;
constexpr size_t kDefaultRingBytes = 16u << 20;
constexpr uint32_t kVlanOffset = 12;  // the tag goes after the two MACs
constexpr uint32_t kVlanLen = 4;
constexpr uint16_t kTpid8021q = 0x8100;  // ETH_P_8021Q, when the kernel does not say which TPID

Napi::Value fail(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, "lbd_native: " + msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

class Capture : public Napi::ObjectWrap<Capture> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Capture(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Capture>(info), env_(info.Env()) {}
  ~Capture() override {
    pinned_ = false;  // collected: nothing holds the wrapper any more
    teardown();
  }

  void onReadable();
  void onPollError(uv_poll_t* handle);

 private:
  Napi::Value Open(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SetFilter(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);

  uint32_t take(const tpacket2_hdr* h, uint32_t status);
  bool deliver(uint32_t len);
  bool enterJs();
  void closeChunk();
  void leaveJs();
  void stopPoll();
  void unpin();
  void teardown();

  napi_env env_;
  Interface itf_;
  RxRing ring_;
  TxSocket tx_;
  uv_poll_t* poll_ = nullptr;
  // While polling, the wrapper is pinned: a started capture must not stop because the
  // JavaScript object that started it was dropped.
  bool pinned_ = false;

  // The JavaScript side: the frame buffer and the callback, held for as long as polling runs.
  napi_ref bufRef_ = nullptr;
  napi_ref fnRef_ = nullptr;
  uint8_t* buf_ = nullptr;
  size_t bufLen_ = 0;
  napi_async_context asyncCtx_ = nullptr;
  napi_ref resource_ = nullptr;

  // One wake-up: the scopes are opened by its first frame.
  bool inLive_ = false;
  bool closeRequested_ = false;
  napi_handle_scope hs_ = nullptr;
  napi_callback_scope cs_ = nullptr;
  napi_handle_scope chunk_ = nullptr;  // the handles of the last kScopeFrames calls
  uint32_t chunkLeft_ = 0;
  napi_value fn_ = nullptr;
  napi_value recv_ = nullptr;
  napi_value pendingError_ = nullptr;

  double frames_ = 0;
  double truncated_ = 0;
  double wakeups_ = 0;
  double ringPackets_ = 0;
  double ringDrops_ = 0;
  double pollErrors_ = 0;
  double sendFailed_ = 0;
};

void onPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* c = static_cast<Capture*>(uv::dataOf(handle));
  if (c == nullptr) return;
  if (status < 0) {
    // ENETDOWN and the like: clear the error and poll on (see Dataplane's onPoll).
    c->onPollError(handle);
    if (uv::dataOf(handle) == nullptr) return;
  }
  c->onReadable();
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
  const uint8_t* p = reinterpret_cast<const uint8_t*>(h) + h->tp_mac;
  const uint32_t len = h->tp_snaplen;
  if (len < h->tp_len || uint64_t(h->tp_mac) + len > ring_.frameSize()) return 0;  // cut by the slot
  const bool vlan = (status & TP_STATUS_VLAN_VALID) || h->tp_vlan_tci != 0;
  if (!vlan || len < kVlanOffset) {
    if (len > bufLen_) return 0;
    std::memcpy(buf_, p, len);
    return len;
  }
  if (len + kVlanLen > bufLen_) return 0;
  const uint16_t tpid = (status & TP_STATUS_VLAN_TPID_VALID) ? h->tp_vlan_tpid : kTpid8021q;
  const uint16_t tci = h->tp_vlan_tci;
  std::memcpy(buf_, p, kVlanOffset);
  const uint8_t tag[kVlanLen] = {uint8_t(tpid >> 8), uint8_t(tpid), uint8_t(tci >> 8), uint8_t(tci)};
  std::memcpy(buf_ + kVlanOffset, tag, kVlanLen);
  std::memcpy(buf_ + kVlanOffset + kVlanLen, p + kVlanOffset, len - kVlanOffset);
  return len + kVlanLen;
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
  if (pendingError_ == nullptr) napi_get_and_clear_last_exception(env_, &pendingError_);
  return false;
}

void Capture::closeChunk() {
  if (chunk_ != nullptr) napi_close_handle_scope(env_, chunk_);
  chunk_ = nullptr;
  chunkLeft_ = 0;
}

bool Capture::enterJs() {
  if (pendingError_ != nullptr) return false;
  if (hs_ == nullptr) {
    napi_open_handle_scope(env_, &hs_);
    napi_value res;
    napi_get_reference_value(env_, resource_, &res);
    // process.nextTick callbacks and promise jobs run when this scope closes, as after any
    // event libuv delivers.
    if (napi_open_callback_scope(env_, res, asyncCtx_, &cs_) != napi_ok) cs_ = nullptr;
    napi_get_reference_value(env_, fnRef_, &fn_);
    napi_get_undefined(env_, &recv_);
  }
  return true;
}

void Capture::leaveJs() {
  inLive_ = false;
  if (hs_ == nullptr) return;
  closeChunk();
  fn_ = recv_ = nullptr;
  if (cs_ != nullptr) napi_close_callback_scope(env_, cs_);
  cs_ = nullptr;
  if (pendingError_ != nullptr) {
    // As from any event handler: 'uncaughtException'.
    napi_fatal_exception(env_, pendingError_);
    pendingError_ = nullptr;
  }
  napi_close_handle_scope(env_, hs_);
  hs_ = nullptr;
}

void Capture::onReadable() {
  if (!ring_.isOpen() || closeRequested_ || buf_ == nullptr) return;
  inLive_ = true;
  pendingError_ = nullptr;
  wakeups_ += 1;
  const uint32_t hdrLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));
  // poll_ == nullptr: stop() from a callback of this wake-up; closeRequested_: close().
  for (uint32_t budget = kWakeBudget; budget > 0 && poll_ != nullptr && !closeRequested_; budget--) {
    tpacket2_hdr* h = ring_.frame(ring_.cursor);
    const uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if ((st & TP_STATUS_USER) == 0) break;
    ring_.cursor = ring_.cursor + 1 == ring_.frameCount() ? 0 : ring_.cursor + 1;
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(h) + hdrLen);
    // On lo every frame shows up twice, going out and coming in: keep one, as libpcap does.
    const bool twice = itf_.loopback && sll->sll_pkttype == PACKET_OUTGOING;
    const uint32_t len = twice ? 0 : take(h, st);
    __atomic_store_n(&h->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    if (twice) continue;
    frames_ += 1;
    if (len == 0) truncated_ += 1;
    if (!deliver(len)) break;
  }
  leaveJs();
  if (closeRequested_) teardown();
  // stop() or close() from a callback: only now may the wrapper go (the last use of `this`).
  if (poll_ == nullptr) unpin();
}

void Capture::onPollError(uv_poll_t* handle) {
  pollErrors_ += 1;
  int err = 0;
  socklen_t l = sizeof err;
  if (ring_.isOpen()) getsockopt(ring_.fd(), SOL_SOCKET, SO_ERROR, &err, &l);
  if (!ring_.isOpen() || uv_poll_start(handle, uv::kReadable, onPoll) != 0) stopPoll();
}

// ---- the methods --------------------------------------------------------------------------

Napi::Value Capture::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    return fail(env, "open(iface: string, filter: string, ringBytes?: number)");
  if (ring_.isOpen()) return fail(env, "open() twice");
  const std::string name = info[0].As<Napi::String>().Utf8Value();
  const std::string filter = info[1].As<Napi::String>().Utf8Value();
  size_t ringBytes = kDefaultRingBytes;
  if (info.Length() >= 3 && info[2].IsNumber()) {
    const double b = info[2].As<Napi::Number>().DoubleValue();
    if (b >= 65536 && b <= double(1u << 30)) ringBytes = static_cast<size_t>(b);
  }
  std::string err;
  std::vector<sock_filter> prog;
  if (!lookupInterface(name, &itf_, &err, true)) return fail(env, err);
  if (!compileFilter(filter, &prog, &err)) return fail(env, err);
  if (!ring_.open(itf_, prog, ringBytes, false, &err)) return fail(env, "capture on \"" + name + "\": " + err);
  if (!tx_.open(itf_, false, &err)) {
    ring_.close();
    return fail(env, "send socket on \"" + name + "\": " + err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("mac", Napi::Buffer<uint8_t>::Copy(env, itf_.mac, 6));
  r.Set("mtu", itf_.mtu);
  r.Set("frameSize", ring_.frameSize());
  r.Set("frames", ring_.frameCount());
  r.Set("loopback", itf_.loopback);
  return r;
}

Napi::Value Capture::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ring_.isOpen()) return fail(env, "start() before open()");
  if (poll_ != nullptr) return fail(env, "start() twice");
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsFunction())
    return fail(env, "start(buffer: Uint8Array, onFrame: (len: number) => void)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array || ta.ByteLength() < 64)
    return fail(env, "start: the buffer must be a Uint8Array of 64 bytes or more");
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return fail(env, "no event loop");
  if (asyncCtx_ == nullptr) {
    napi_value res, name;
    napi_create_object(env, &res);
    napi_create_string_utf8(env, "lbd_native.ring", NAPI_AUTO_LENGTH, &name);
    napi_create_reference(env, res, 1, &resource_);
    napi_async_init(env, res, name, &asyncCtx_);
  }
  int rc;
  poll_ = uv::openPoll(loop, ring_.fd(), this, &rc);
  if (poll_ != nullptr) rc = uv_poll_start(poll_, uv::kReadable, onPoll);
  if (rc != 0) {
    stopPoll();
    return fail(env, std::string("uv_poll: ") + uv_strerror(rc));
  }
  auto buf = ta.As<Napi::Uint8Array>();
  buf_ = buf.Data();  // the backing store of a Buffer does not move
  bufLen_ = buf.ByteLength();
  napi_create_reference(env, buf, 1, &bufRef_);
  napi_create_reference(env, info[1], 1, &fnRef_);
  Ref();
  pinned_ = true;
  return env.Undefined();
}

void Capture::stopPoll() {
  if (poll_ != nullptr) {
    uv_poll_t* p = poll_;
    poll_ = nullptr;
    uv::closePoll(p);
  }
  if (bufRef_ != nullptr) napi_delete_reference(env_, bufRef_);
  if (fnRef_ != nullptr) napi_delete_reference(env_, fnRef_);
  bufRef_ = fnRef_ = nullptr;
  buf_ = nullptr;
  bufLen_ = 0;
  // From a callback, onReadable unpins once the wake-up is over: JavaScript still runs in it
  // (the rest of the callback, then microtasks), and a collected wrapper would free `this`.
  if (!inLive_) unpin();
}

void Capture::unpin() {
  if (!pinned_) return;
  pinned_ = false;
  Unref();
}

void Capture::teardown() {
  closeRequested_ = false;
  stopPoll();
  ring_.close();
  tx_.close();
  if (asyncCtx_ != nullptr) napi_async_destroy(env_, asyncCtx_);
  asyncCtx_ = nullptr;
  if (resource_ != nullptr) napi_delete_reference(env_, resource_);
  resource_ = nullptr;
}

Napi::Value Capture::Stop(const Napi::CallbackInfo& info) {
  // From a callback the wake-up ends after that frame (poll_ is gone); the buffer stays ours
  // until then because the loop checks poll_ before taking the next frame.
  stopPoll();
  return info.Env().Undefined();
}

Napi::Value Capture::Close(const Napi::CallbackInfo& info) {
  if (inLive_) {
    closeRequested_ = true;  // from a callback: the wake-up ends, then everything is freed
    stopPoll();
  } else {
    teardown();
  }
  return info.Env().Undefined();
}

Napi::Value Capture::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    return fail(env, "send(buf: Uint8Array, len: number)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return fail(env, "send: buf must be a Uint8Array");
  auto buf = ta.As<Napi::Uint8Array>();
  const double l = info[1].As<Napi::Number>().DoubleValue();
  bool ok = l >= 0 && l <= double(buf.ByteLength()) && tx_.sendOne(buf.Data(), static_cast<uint32_t>(l));
  if (!ok) sendFailed_ += 1;
  return Napi::Boolean::New(env, ok);
}

Napi::Value Capture::SetFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "setFilter(filter: string)");
  std::string err;
  std::vector<sock_filter> prog;
  if (!compileFilter(info[0].As<Napi::String>().Utf8Value(), &prog, &err)) return fail(env, err);
  if (!ring_.setFilter(prog, &err)) return fail(env, err);
  return env.Undefined();
}

Napi::Value Capture::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t pk, dr;
  ring_.readStats(&pk, &dr);
  ringPackets_ += double(pk);
  ringDrops_ += double(dr);
  Napi::Object o = Napi::Object::New(env);
  o.Set("frames", frames_);
  o.Set("truncated", truncated_);
  o.Set("wakeups", wakeups_);
  o.Set("ringPackets", ringPackets_);
  o.Set("ringDrops", ringDrops_);
  o.Set("pollErrors", pollErrors_);
  o.Set("sendFailed", sendFailed_);
  o.Set("sendSyscalls", double(tx_.syscalls));
  o.Set("lastSendErrno", tx_.lastErrno);
  o.Set("live", ring_.isOpen());
  o.Set("polling", poll_ != nullptr);
  return o;
}

}  // namespace

Napi::Function initCapture(Napi::Env env) { return Capture::Init(env); }

}  // namespace lbd
