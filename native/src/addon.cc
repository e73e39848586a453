// lbd_native: the Node-API face of the fast path. One Dataplane object per daemon, used on the
// main thread only (no locks): attach() hands it the Forwarder's typed arrays and two
// callbacks, openLive()/start() run the AF_PACKET capture loop on a uv_poll, processFrames()
// runs the very same per-frame code and batching on frames from memory (tests, benchmarks).
#include <linux/if_packet.h>
#include <napi.h>
#include <time.h>

#include <cstring>
#include <string>
#include <vector>

#include "afpacket.h"
#include "capture.h"
#include "fastpath.h"
#include "libpcap.h"
#include "libuv.h"

namespace lbd {

namespace {

constexpr uint32_t kWakeBudget = 4096;  // frames per uv_poll wake-up before yielding to the loop
// With busy-poll on, a wake-up also yields after this long, frames or not: a steady trickle
// (one frame per spin) would otherwise keep the event loop (timers, admin, metrics) waiting.
constexpr uint64_t kMaxBusyWakeNs = 1000000;
constexpr uint64_t kMaxBusyPollNs = kMaxBusyWakeNs;  // a longer spin could not happen
constexpr size_t kDefaultRingBytes = 16u << 20;

uint64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

inline void cpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class Dataplane;

/** Calls into JavaScript: the scheduler upcall and the TypeScript path for ARP. */
class JsHost : public Host {
 public:
  Dataplane* owner = nullptr;
  napi_env env = nullptr;
  napi_ref scheduleFn = nullptr;
  napi_ref slowFn = nullptr;
  uint32_t* args = nullptr;  // Uint32Array shared with JS (kArgCount)
  uint8_t* scratch = nullptr;
  size_t scratchLen = 0;
  // The callbacks as values of the current outer handle scope (bind() at the start of a
  // processFrames() call or of a wake-up's first call into JS), saving a lookup per call.
  napi_value scheduleVal = nullptr;
  napi_value slowVal = nullptr;
  napi_value undefinedVal = nullptr;
  void bind() {
    napi_get_reference_value(env, scheduleFn, &scheduleVal);
    napi_get_reference_value(env, slowFn, &slowVal);
    napi_get_undefined(env, &undefinedVal);
  }
  void unbind() { scheduleVal = slowVal = undefinedVal = nullptr; }
  bool schedule(const uint32_t* a, int32_t* result) override;
  bool slowPath(const uint8_t* frame, uint32_t len) override;
};

/** Sends to the egress interface with sendmmsg. */
class SocketSink : public Sink {
 public:
  TxSocket* tx = nullptr;
  void send(TxEntry* entries, uint32_t n, uint8_t* ok) override { tx->sendBatch(entries, n, ok); }
};

/** Keeps copies of sent frames (tests) or just counts them (benchmarks). */
class MemorySink : public Sink {
 public:
  bool collect = false;
  bool refuse = false;
  std::vector<uint8_t> bytes;
  std::vector<uint32_t> lens;
  void send(TxEntry* entries, uint32_t n, uint8_t* ok) override {
    if (refuse) return;
    for (uint32_t i = 0; i < n; i++) {
      ok[i] = 1;
      if (collect) {
        bytes.insert(bytes.end(), entries[i].data, entries[i].data + entries[i].len);
        lens.push_back(entries[i].len);
      }
    }
  }
};

class Dataplane : public Napi::ObjectWrap<Dataplane> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Dataplane(const Napi::CallbackInfo& info);
  ~Dataplane() override { teardown(); }

  bool enterJs();
  void onReadable();
  void onPollError(uv_poll_t* handle);

  napi_env env_;
  napi_value pendingError_ = nullptr;

 private:
  Napi::Value Attach(const Napi::CallbackInfo& info);
  Napi::Value ProcessFrames(const Napi::CallbackInfo& info);
  Napi::Value OpenLive(const Napi::CallbackInfo& info);
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SetFilter(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value SetBusyPoll(const Napi::CallbackInfo& info);

  void leaveJs();
  void stopPoll();
  void teardown();
  void releaseRefs();

  FastPath fp_;
  JsHost host_;
  std::vector<napi_ref> refs_;  // the attached typed arrays and callbacks stay alive

  Interface capIf_, egIf_;
  RxRing ring_;
  TxSocket txEgress_, txCapture_;
  SocketSink egressSink_;
  uv_poll_t* poll_ = nullptr;
  napi_async_context asyncCtx_ = nullptr;
  napi_ref resource_ = nullptr;

  // Live callback state: scopes are opened only when a wake-up calls into JavaScript.
  bool inLive_ = false;
  bool closeRequested_ = false;
  napi_handle_scope hs_ = nullptr;
  napi_callback_scope cs_ = nullptr;

  double wakeups_ = 0;
  double liveFrames_ = 0;
  // Frames taken while busy-polling: the ring had run dry in this wake-up and the spin caught
  // them, where without busy_poll the loop would have slept in epoll and been woken again.
  double busyPollFrames_ = 0;
  uint64_t spinNs_ = 0;
  double ringPackets_ = 0;
  double ringDrops_ = 0;
  double pollErrors_ = 0;
};

// ---- JsHost -------------------------------------------------------------------------------

bool JsHost::schedule(const uint32_t* a, int32_t* result) {
  if (!owner->enterJs()) return false;
  std::memcpy(args, a, kArgCount * sizeof(uint32_t));
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value ret;
  bool ok = napi_call_function(env, undefinedVal, scheduleVal, 0, nullptr, &ret) == napi_ok;
  if (ok && napi_get_value_int32(env, ret, result) != napi_ok) {
    napi_throw_type_error(env, nullptr,
                          "lbd_native: the schedule callback must return a number (slot or ~drop reason)");
    ok = false;
  }
  napi_close_handle_scope(env, hs);
  return ok;  // on false the exception is pending: the caller of process() deals with it
}

bool JsHost::slowPath(const uint8_t* frame, uint32_t len) {
  if (!owner->enterJs()) return false;
  uint32_t n = len <= scratchLen ? len : static_cast<uint32_t>(scratchLen);
  std::memcpy(scratch, frame, n);
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value arg, ret;
  napi_create_uint32(env, n, &arg);
  bool ok = napi_call_function(env, undefinedVal, slowVal, 1, &arg, &ret) == napi_ok;
  napi_close_handle_scope(env, hs);
  return ok;
}

// ---- helpers ------------------------------------------------------------------------------

Napi::Value throwError(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, "lbd_native: " + msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

/** obj[key] as a typed array of `type` with at least `minLen` elements. */
bool typedArray(napi_env env, napi_value obj, const char* key, napi_typedarray_type type, size_t minLen, void** data,
                size_t* length, std::vector<napi_ref>* refs, std::string* err) {
  napi_value v;
  bool is = false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_is_typedarray(env, v, &is) != napi_ok || !is) {
    *err = std::string(key) + " is not a typed array";
    return false;
  }
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  // Getting the data pointer moves a small on-heap typed array off the heap for good, so the
  // pointer stays valid for as long as the array lives (the reference below keeps it alive).
  if (napi_get_typedarray_info(env, v, &t, length, data, &ab, &off) != napi_ok || t != type) {
    *err = std::string(key) + " has the wrong element type";
    return false;
  }
  if (*length < minLen) {
    *err = std::string(key) + " is too short (" + std::to_string(*length) + " < " + std::to_string(minLen) + ")";
    return false;
  }
  napi_ref ref;
  napi_create_reference(env, v, 1, &ref);
  refs->push_back(ref);
  return true;
}

// ---- Dataplane ----------------------------------------------------------------------------

Napi::Function Dataplane::Init(Napi::Env env) {
  return DefineClass(env, "Dataplane",
                     {
                         InstanceMethod("attach", &Dataplane::Attach),
                         InstanceMethod("processFrames", &Dataplane::ProcessFrames),
                         InstanceMethod("openLive", &Dataplane::OpenLive),
                         InstanceMethod("start", &Dataplane::Start),
                         InstanceMethod("stop", &Dataplane::Stop),
                         InstanceMethod("close", &Dataplane::Close),
                         InstanceMethod("setBusyPoll", &Dataplane::SetBusyPoll),
                         InstanceMethod("send", &Dataplane::Send),
                         InstanceMethod("setFilter", &Dataplane::SetFilter),
                         InstanceMethod("stats", &Dataplane::Stats),
                     });
}

Dataplane::Dataplane(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Dataplane>(info), env_(info.Env()) {
  host_.owner = this;
  host_.env = env_;
  fp_.host = &host_;
  egressSink_.tx = &txEgress_;
}

void Dataplane::releaseRefs() {
  for (napi_ref r : refs_) napi_delete_reference(env_, r);
  refs_.clear();
  fp_.attached = false;
}

Napi::Value Dataplane::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (inLive_) return throwError(env, "attach() from inside a callback");
  if (info.Length() < 1 || !info[0].IsObject()) return throwError(env, "attach(tables) expects an object");
  napi_value o = info[0];
  std::vector<napi_ref> refs;
  std::string err;
  Tables t;
  size_t n, slots, dests;
  void* d;
  auto fail = [&](const std::string& m) {
    for (napi_ref r : refs) napi_delete_reference(env, r);
    return throwError(env, "attach: " + m);
  };
#define ARR(key, type, min, field, ctype, lenvar)                                      \
  if (!typedArray(env, o, key, type, min, &d, &lenvar, &refs, &err)) return fail(err); \
  t.field = static_cast<ctype*>(d);

  // Connection table: every array has the same power-of-two length.
  ARR("keyAddr", napi_uint32_array, 1, keyAddr, uint32_t, slots);
  if (slots & (slots - 1)) return fail("the connection table size is not a power of two");
  if (slots > (size_t(1) << 31)) return fail("the connection table is too large");
  ARR("keyPort", napi_uint32_array, slots, keyPort, uint32_t, n);
  ARR("dest", napi_int32_array, slots, dest, int32_t, n);
  ARR("state", napi_uint8_array, slots, state, uint8_t, n);
  ARR("flags", napi_uint8_array, slots, flags, uint8_t, n);
  ARR("expires", napi_uint32_array, slots, expires, uint32_t, n);
  t.connMask = static_cast<uint32_t>(slots - 1);
  // Real servers.
  ARR("macKnown", napi_uint8_array, 1, macKnown, uint8_t, dests);
  ARR("mac", napi_uint8_array, dests * 6, mac, uint8_t, n);
  ARR("active", napi_int32_array, dests, active, int32_t, n);
  ARR("inactive", napi_int32_array, dests, inactive, int32_t, n);
  ARR("destPackets", napi_float64_array, dests, destPackets, double, n);
  ARR("destBytes", napi_float64_array, dests, destBytes, double, n);
  ARR("downAction", napi_uint8_array, dests, downAction, uint8_t, n);
  t.nDests = static_cast<uint32_t>(dests);
  // Services.
  size_t svcSlots, statsLen;
  ARR("svcVip", napi_uint32_array, 1, svcVip, uint32_t, svcSlots);
  ARR("svcPortProto", napi_uint32_array, svcSlots, svcPortProto, uint32_t, n);
  ARR("svcMeta", napi_int32_array, svcSlots + 1, svcMeta, int32_t, n);
  ARR("svcStats", napi_float64_array, 2, svcStats, double, statsLen);
  t.svcSlots = static_cast<uint32_t>(svcSlots);
  t.svcStatsCount = static_cast<uint32_t>(statsLen / 2);
  // Counters and parameters.
  ARR("counters", napi_float64_array, ctr::Count, counters, double, n);
  ARR("drops", napi_float64_array, drop::Count, drops, double, n);
  ARR("clock", napi_float64_array, 1, clock, double, n);
  ARR("timeouts", napi_uint32_array, kTimeoutsLen, timeouts, uint32_t, n);
  ARR("macs", napi_uint8_array, 12, macs, uint8_t, n);
  ARR("tcpNext", napi_uint16_array, kTcpNextStates * kTcpNextFlags, tcpNext, uint16_t, n);
  void* argsData;
  size_t scratchLen;
  void* scratchData;
  if (!typedArray(env, o, "upcallArgs", napi_uint32_array, kArgCount, &argsData, &n, &refs, &err)) return fail(err);
  if (!typedArray(env, o, "scratch", napi_uint8_array, 64, &scratchData, &scratchLen, &refs, &err)) return fail(err);
#undef ARR

  napi_value sched, slow;
  napi_valuetype vt;
  if (napi_get_named_property(env, o, "schedule", &sched) != napi_ok || napi_typeof(env, sched, &vt) != napi_ok ||
      vt != napi_function)
    return fail("schedule is not a function");
  if (napi_get_named_property(env, o, "slowPath", &slow) != napi_ok || napi_typeof(env, slow, &vt) != napi_ok ||
      vt != napi_function)
    return fail("slowPath is not a function");
  napi_ref schedRef, slowRef;
  napi_create_reference(env, sched, 1, &schedRef);
  napi_create_reference(env, slow, 1, &slowRef);
  refs.push_back(schedRef);
  refs.push_back(slowRef);

  releaseRefs();
  refs_ = std::move(refs);
  fp_.t = t;
  fp_.queued = 0;
  host_.scheduleFn = schedRef;
  host_.slowFn = slowRef;
  host_.args = static_cast<uint32_t*>(argsData);
  host_.scratch = static_cast<uint8_t*>(scratchData);
  host_.scratchLen = scratchLen;
  fp_.attached = true;
  return env.Undefined();
}

bool Dataplane::enterJs() {
  if (!inLive_) return true;
  if (pendingError_ != nullptr) return false;  // an earlier call threw: no more JS this wake-up
  if (hs_ == nullptr) {
    napi_open_handle_scope(env_, &hs_);
    napi_value res;
    napi_get_reference_value(env_, resource_, &res);
    // A callback scope: when it closes, process.nextTick callbacks and promise jobs run, as
    // after any event delivered by libuv.
    if (napi_open_callback_scope(env_, res, asyncCtx_, &cs_) != napi_ok) cs_ = nullptr;
    host_.bind();
  }
  return true;
}

void Dataplane::leaveJs() {
  inLive_ = false;
  if (hs_ == nullptr) return;
  host_.unbind();
  if (cs_ != nullptr) napi_close_callback_scope(env_, cs_);
  cs_ = nullptr;
  if (pendingError_ != nullptr) {
    // Like an exception thrown from any event handler: 'uncaughtException'.
    napi_fatal_exception(env_, pendingError_);
    pendingError_ = nullptr;
  }
  napi_close_handle_scope(env_, hs_);
  hs_ = nullptr;
}

static void onPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* dp = static_cast<Dataplane*>(uv::dataOf(handle));
  if (dp == nullptr) return;
  if (status < 0) {
    // A socket error (e.g. ENETDOWN when the interface goes down; the kernel re-hooks the
    // socket when it comes back up). libuv stops the handle on POLLERR: clear the error and
    // poll again, or the capture would die silently.
    dp->onPollError(handle);
    if (uv::dataOf(handle) == nullptr) return;
  }
  dp->onReadable();
}

void Dataplane::onReadable() {
  if (!ring_.isOpen() || !fp_.attached || closeRequested_) return;
  inLive_ = true;
  pendingError_ = nullptr;
  wakeups_ += 1;
  tpacket2_hdr* pending[kBatch];
  uint32_t np = 0;
  const uint32_t hdrLen = TPACKET_ALIGN(sizeof(tpacket2_hdr));
  const uint32_t frameSize = ring_.frameSize();
  // closeRequested_: close() from an upcall of this wake-up; the frames taken so far are
  // flushed and handed back, the rest stay in the ring for the socket's close to discard.
  // Busy-poll (config busy_poll): when the ring runs dry, send what was taken, then keep looking
  // for up to spinNs_ before going back to epoll: at low load the next frame usually comes
  // within a few tens of µs, and catching it here saves the sleep and wake-up (latency).
  uint64_t idleSince = 0;
  const uint64_t wakeDeadline = spinNs_ != 0 ? monotonicNs() + kMaxBusyWakeNs : 0;
  // poll_ == nullptr: stop() from an upcall of this wake-up.
  for (uint32_t budget = kWakeBudget; budget > 0 && !closeRequested_ && poll_ != nullptr;) {
    tpacket2_hdr* h = ring_.frame(ring_.cursor);
    const uint32_t st = __atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE);
    if ((st & TP_STATUS_USER) == 0) {
      if (spinNs_ == 0) break;
      const uint64_t now = monotonicNs();
      if (idleSince == 0) {
        fp_.flush(egressSink_);
        for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        np = 0;
        idleSince = now;
      }
      if (now - idleSince >= spinNs_ || now >= wakeDeadline) break;
      cpuRelax();
      continue;
    }
    if (idleSince != 0) busyPollFrames_ += 1;
    idleSince = 0;
    budget--;
    ring_.cursor = ring_.cursor + 1 == ring_.frameCount() ? 0 : ring_.cursor + 1;
    pending[np++] = h;
    const auto* sll = reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<uint8_t*>(h) + hdrLen);
    if (sll->sll_pkttype != PACKET_OUTGOING) {
      liveFrames_ += 1;
      // A frame cut short by the ring's frame size is as truncated as one cut by libpcap's
      // buffer on the TypeScript path: length 0.
      uint32_t len = h->tp_snaplen;
      if (len < h->tp_len || uint64_t(h->tp_mac) + len > frameSize) len = 0;
      uint32_t status = 0;
      if (st & TP_STATUS_CSUMNOTREADY) status |= kStatusCsumNotReady;
      if ((st & TP_STATUS_VLAN_VALID) || h->tp_vlan_tci != 0) status |= kStatusVlan;
      if (fp_.process(reinterpret_cast<uint8_t*>(h) + h->tp_mac, len, status) < 0) {
        if (pendingError_ == nullptr) napi_get_and_clear_last_exception(env_, &pendingError_);
        break;
      }
    }
    if (fp_.queued == kBatch || np == kBatch) {
      fp_.flush(egressSink_);
      for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      np = 0;
    }
  }
  fp_.flush(egressSink_);
  for (uint32_t i = 0; i < np; i++) __atomic_store_n(&pending[i]->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  leaveJs();
  if (closeRequested_) teardown();
}

void Dataplane::onPollError(uv_poll_t* handle) {
  pollErrors_ += 1;
  int err = 0;
  socklen_t l = sizeof err;
  if (ring_.isOpen()) getsockopt(ring_.fd(), SOL_SOCKET, SO_ERROR, &err, &l);
  if (!ring_.isOpen() || uv_poll_start(handle, uv::kReadable, onPoll) != 0) stopPoll();
}

Napi::Value Dataplane::ProcessFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!fp_.attached) return throwError(env, "processFrames() before attach()");
  if (inLive_) return throwError(env, "processFrames() from inside a callback");
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray())
    return throwError(env, "processFrames(frames: Uint8Array, lengths: Uint32Array, opts?)");
  auto frames = info[0].As<Napi::TypedArray>();
  auto lengthsTa = info[1].As<Napi::TypedArray>();
  if (frames.TypedArrayType() != napi_uint8_array || lengthsTa.TypedArrayType() != napi_uint32_array)
    return throwError(env, "processFrames: frames must be a Uint8Array and lengths a Uint32Array");
  auto buf = frames.As<Napi::Uint8Array>();
  auto lengths = lengthsTa.As<Napi::Uint32Array>();
  const size_t n = lengths.ElementLength();
  uint32_t* status = nullptr;
  MemorySink sink;
  sink.collect = true;
  if (info.Length() >= 3 && info[2].IsObject()) {
    Napi::Object opts = info[2].As<Napi::Object>();
    Napi::Value s = opts.Get("status");
    if (s.IsTypedArray()) {
      auto sta = s.As<Napi::TypedArray>();
      if (sta.TypedArrayType() != napi_uint32_array || sta.ElementLength() != n)
        return throwError(env, "processFrames: status must be a Uint32Array as long as lengths");
      status = sta.As<Napi::Uint32Array>().Data();
    }
    Napi::Value c = opts.Get("collect");
    if (c.IsBoolean()) sink.collect = c.As<Napi::Boolean>().Value();
    Napi::Value r = opts.Get("refuse");
    if (r.IsBoolean()) sink.refuse = r.As<Napi::Boolean>().Value();
  }
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += lengths[i];
  if (total > buf.ByteLength()) return throwError(env, "processFrames: the lengths add up to more than the buffer");

  auto verdicts = Napi::Uint8Array::New(env, n);
  host_.bind();  // valid for this call (the callbacks' handles live in its scope)
  uint8_t* v = verdicts.Data();
  uint8_t* p = buf.Data();
  const uint32_t* lens = lengths.Data();
  for (size_t i = 0; i < n; i++) {
    int r = fp_.process(p, lens[i], status ? status[i] : 0);
    if (r < 0) {
      fp_.flush(sink);
      host_.unbind();
      return env.Undefined();  // the callback's exception propagates
    }
    v[i] = static_cast<uint8_t>(r);
    p += lens[i];
    if (fp_.queued == kBatch) fp_.flush(sink);
  }
  fp_.flush(sink);
  host_.unbind();

  Napi::Object result = Napi::Object::New(env);
  result.Set("verdicts", verdicts);
  if (sink.collect) {
    Napi::Array sent = Napi::Array::New(env, sink.lens.size());
    size_t off = 0;
    for (size_t i = 0; i < sink.lens.size(); i++) {
      sent.Set(static_cast<uint32_t>(i), Napi::Buffer<uint8_t>::Copy(env, sink.bytes.data() + off, sink.lens[i]));
      off += sink.lens[i];
    }
    result.Set("sent", sent);
  } else {
    result.Set("sent", env.Null());
  }
  return result;
}

Napi::Value Dataplane::OpenLive(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString())
    return throwError(env, "openLive(capture: string, egress: string, filter: string, ringBytes?: number)");
  if (ring_.isOpen()) return throwError(env, "openLive() twice");
  std::string capture = info[0].As<Napi::String>().Utf8Value();
  std::string egress = info[1].As<Napi::String>().Utf8Value();
  std::string filter = info[2].As<Napi::String>().Utf8Value();
  size_t ringBytes = kDefaultRingBytes;
  if (info.Length() >= 4 && info[3].IsNumber()) {
    double b = info[3].As<Napi::Number>().DoubleValue();
    if (b >= 65536 && b <= double(1u << 30)) ringBytes = static_cast<size_t>(b);
  }
  std::string err;
  std::vector<sock_filter> prog;
  if (!lookupInterface(capture, &capIf_, &err)) return throwError(env, err);
  if (!lookupInterface(egress, &egIf_, &err)) return throwError(env, err);
  if (!compileFilter(filter, &prog, &err)) return throwError(env, err);
  if (!ring_.open(capIf_, prog, ringBytes, true, &err))
    return throwError(env, "capture on \"" + capture + "\": " + err);
  if (!txEgress_.open(egIf_, true, &err)) {
    ring_.close();
    return throwError(env, "egress on \"" + egress + "\": " + err);
  }
  if (egIf_.index != capIf_.index && !txCapture_.open(capIf_, true, &err)) {
    ring_.close();
    txEgress_.close();
    return throwError(env, "send socket on \"" + capture + "\": " + err);
  }
  Napi::Object r = Napi::Object::New(env);
  r.Set("captureMac", Napi::Buffer<uint8_t>::Copy(env, capIf_.mac, 6));
  r.Set("egressMac", Napi::Buffer<uint8_t>::Copy(env, egIf_.mac, 6));
  r.Set("captureMtu", capIf_.mtu);
  r.Set("frameSize", ring_.frameSize());
  r.Set("frames", ring_.frameCount());
  return r;
}

Napi::Value Dataplane::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!ring_.isOpen()) return throwError(env, "start() before openLive()");
  if (!fp_.attached) return throwError(env, "start() before attach()");
  if (poll_ != nullptr) return env.Undefined();
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throwError(env, "no event loop");
  if (asyncCtx_ == nullptr) {
    napi_value res, name;
    napi_create_object(env, &res);
    napi_create_string_utf8(env, "lbd_native.capture", NAPI_AUTO_LENGTH, &name);
    napi_create_reference(env, res, 1, &resource_);
    napi_async_init(env, res, name, &asyncCtx_);
  }
  int rc;
  poll_ = uv::openPoll(loop, ring_.fd(), this, &rc);
  if (poll_ != nullptr) rc = uv_poll_start(poll_, uv::kReadable, onPoll);
  if (rc != 0) {
    stopPoll();
    return throwError(env, std::string("uv_poll: ") + uv_strerror(rc));
  }
  return env.Undefined();
}

void Dataplane::stopPoll() {
  if (poll_ == nullptr) return;
  uv_poll_t* p = poll_;
  poll_ = nullptr;
  uv::closePoll(p);
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
  stopPoll();
  return info.Env().Undefined();
}

void Dataplane::teardown() {
  closeRequested_ = false;
  stopPoll();
  ring_.close();
  txEgress_.close();
  txCapture_.close();
  if (asyncCtx_ != nullptr) napi_async_destroy(env_, asyncCtx_);
  asyncCtx_ = nullptr;
  if (resource_ != nullptr) napi_delete_reference(env_, resource_);
  resource_ = nullptr;
  releaseRefs();  // the Forwarder's arrays and the callbacks are no longer held
}

Napi::Value Dataplane::Close(const Napi::CallbackInfo& info) {
  if (inLive_) {
    // Called from a callback of this very wake-up: finish the batch first.
    closeRequested_ = true;
    stopPoll();
  } else {
    teardown();
  }
  return info.Env().Undefined();
}

Napi::Value Dataplane::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    return throwError(env, "send(buf: Uint8Array, len: number)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return throwError(env, "send: buf must be a Uint8Array");
  auto buf = ta.As<Napi::Uint8Array>();
  double l = info[1].As<Napi::Number>().DoubleValue();
  if (!(l >= 0) || l > double(buf.ByteLength())) return Napi::Boolean::New(env, false);
  TxSocket* tx = txCapture_.isOpen() ? &txCapture_ : &txEgress_;
  return Napi::Boolean::New(env, tx->sendOne(buf.Data(), static_cast<uint32_t>(l)));
}

Napi::Value Dataplane::SetFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return throwError(env, "setFilter(filter: string)");
  std::string err;
  std::vector<sock_filter> prog;
  if (!compileFilter(info[0].As<Napi::String>().Utf8Value(), &prog, &err)) return throwError(env, err);
  if (!ring_.setFilter(prog, &err)) return throwError(env, err);
  return env.Undefined();
}

Napi::Value Dataplane::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t pk, dr;
  ring_.readStats(&pk, &dr);
  ringPackets_ += double(pk);
  ringDrops_ += double(dr);
  Napi::Object o = Napi::Object::New(env);
  o.Set("frames", fp_.stats.frames);
  o.Set("upcalls", fp_.stats.upcalls);
  o.Set("slowPath", fp_.stats.slowPath);
  o.Set("csumFixed", fp_.stats.csumFixed);
  o.Set("flushes", fp_.stats.flushes);
  o.Set("sendFailed", fp_.stats.sendFailed);
  o.Set("wakeups", wakeups_);
  o.Set("liveFrames", liveFrames_);
  o.Set("busyPollFrames", busyPollFrames_);
  o.Set("ringPackets", ringPackets_);
  o.Set("ringDrops", ringDrops_);
  o.Set("pollErrors", pollErrors_);
  o.Set("sendSyscalls", double(txEgress_.syscalls + txCapture_.syscalls));
  o.Set("lastSendErrno", txEgress_.lastErrno);
  o.Set("live", ring_.isOpen());
  o.Set("polling", poll_ != nullptr);
  return o;
}

/** The contract numbers this addon was compiled with (native.ts checks them against contract.ts). */
Napi::Object exportContract(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
  c.Set("verdict", [&] {
    Napi::Object v = Napi::Object::New(env);
    v.Set("forward", int(kForward));
    v.Set("drop", int(kDrop));
    v.Set("arp", int(kArp));
    return v;
  }());
  const char* dropNames[] = {"truncated",   "not_ipv4",    "bad_ip_header", "fragment",
                             "unsupported", "not_our_mac", "no_connection", "no_real_server",
                             "table_full",  "no_mac",      "send_failed"};
  static_assert(sizeof dropNames / sizeof dropNames[0] == drop::Count, "drop names");
  Napi::Array drops = Napi::Array::New(env, drop::Count);
  for (uint32_t i = 0; i < drop::Count; i++) drops.Set(i, dropNames[i]);
  c.Set("dropReasons", drops);
  c.Set("counterCount", int(ctr::Count));
  c.Set("slotEmpty", SLOT_EMPTY);
  c.Set("connFInactive", int(CONN_F_INACTIVE));
  c.Set("stateNone", int(state::None));
  c.Set("stateEstablished", int(state::Established));
  c.Set("stateUdp", int(state::Udp));
  c.Set("tcpNextStates", kTcpNextStates);
  c.Set("tcpNextFlags", kTcpNextFlags);
  c.Set("undefinedState", int(kUndefinedState));
  c.Set("timeoutsLen", kTimeoutsLen);
  c.Set("upcallArgs", uint32_t(kArgCount));
  c.Set("batch", kBatch);
  // flowHash of a few keys, so that a drifted hash is caught too.
  Napi::Array h = Napi::Array::New(env, 3);
  h.Set(uint32_t(0), flowHash(0, 0));
  h.Set(uint32_t(1), flowHash(0x0a000a32u, (3u << 16) | 40000u));
  h.Set(uint32_t(2), flowHash(0xffffffffu, 0xffffffffu));
  c.Set("flowHashSamples", h);
  return c;
}

/** libpcap(): the soname of the libpcap that compiles filters; throws what to install when none loads. */
Napi::Value Libpcap(const Napi::CallbackInfo& info) {
  std::string err;
  const char* soname = pcap::load(&err);
  if (soname == nullptr) return throwError(info.Env(), err);
  return Napi::String::New(info.Env(), soname);
}

}  // namespace

Napi::Object InitAddon(Napi::Env env, Napi::Object exports) {
  exports.Set("Dataplane", Dataplane::Init(env));
  exports.Set("Capture", initCapture(env));
  exports.Set("libpcap", Napi::Function::New(env, Libpcap, "libpcap"));
  exports.Set("contract", exportContract(env));
  exports.Set("abiVersion", 2);  // binding.ts ABI_VERSION
  return exports;
}

}  // namespace lbd

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return lbd::InitAddon(env, exports); }

NODE_API_MODULE(lbd_native, Init)
