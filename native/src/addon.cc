// lbd_native: the Node-API face of the fast path, and the module's exports (Dataplane, Capture,
// libpcap(), the contract numbers). This file holds the Dataplane object's core: construction and
// its method table, the calls into JavaScript (JsHost, enterJs/leaveJs), processFrames() (the
// per-frame code and batching of the live path on frames from memory: tests, benchmarks) and
// close/send/setFilter/stats. attach() is in attach.cc, the live capture loop in live.cc; the
// class is declared in dataplane.h. One Dataplane object per daemon, main thread only (no locks).
#include <napi.h>

#include <cstring>
#include <string>
#include <vector>

#include "afpacket.h"
#include "capture.h"
#include "dataplane.h"
#include "fastpath.h"
#include "libpcap.h"
#include "notify.h"
#include "statefile.h"
#include "tap.h"

namespace lbd {

namespace {

/** Keeps copies of sent frames (tests) or just counts them (benchmarks). */
class MemorySink : public Sink {
 public:
  bool collect = false;
  bool refuse = false;
  std::vector<uint8_t> bytes;
  std::vector<uint32_t> lens;
  std::vector<uint8_t> vnets;  // kVnetLen bytes per sent frame
  void send(TxEntry* entries, uint32_t n, uint8_t* ok) override {
    if (refuse) return;
    for (uint32_t i = 0; i < n; i++) {
      ok[i] = 1;
      if (collect) {
        bytes.insert(bytes.end(), entries[i].data, entries[i].data + entries[i].len);
        lens.push_back(entries[i].len);
        vnets.insert(vnets.end(), entries[i].vnet, entries[i].vnet + kVnetLen);
      }
    }
  }
};

}  // namespace

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

bool JsHost::slowPath(const uint8_t* frame, uint32_t len, const uint8_t* vnet, int* verdict) {
  if (!owner->enterJs()) return false;
  // attach() took a scratch buffer of kMaxFrame bytes or more: a frame never is longer (0, a
  // truncated frame, for one that would be: never handed over cut).
  uint32_t n = len <= scratchLen ? len : 0;
  std::memcpy(scratch, frame, n);
  if (slowVnet != nullptr) std::memcpy(slowVnet, vnet, kVnetLen);
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_value arg, ret;
  napi_create_uint32(env, n, &arg);
  bool ok = napi_call_function(env, undefinedVal, slowVal, 1, &arg, &ret) == napi_ok;
  // The callback's result, when it is Forwarder.process()'s verdict.
  int32_t v;
  if (ok && napi_get_value_int32(env, ret, &v) == napi_ok && v >= kForward && v <= kArp) *verdict = v;
  napi_close_handle_scope(env, hs);
  return ok;
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

Dataplane::Dataplane(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<Dataplane>(info), env_(info.Env()), rp_(info.Env(), this, "lbd_native.capture") {
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

bool Dataplane::enterJs() {
  if (!rp_.inLive) return true;
  if (rp_.pendingError != nullptr) return false;  // an earlier call threw: no more JS this wake-up
  if (!rp_.inScopes()) {
    rp_.openScopes();
    host_.bind();
  }
  return true;
}

void Dataplane::leaveJs() {
  rp_.inLive = false;
  if (!rp_.inScopes()) return;
  host_.unbind();
  rp_.closeScopes();
}

Napi::Value Dataplane::ProcessFrames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!fp_.attached) return throwError(env, "processFrames() before attach()");
  if (rp_.inLive) return throwError(env, "processFrames() from inside a callback");
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
  const uint8_t* vnet = nullptr;
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
    Napi::Value vn = opts.Get("vnet");
    if (vn.IsTypedArray()) {
      auto vta = vn.As<Napi::TypedArray>();
      if (vta.TypedArrayType() != napi_uint8_array || vta.ByteLength() != n * kVnetLen)
        return throwError(env, "processFrames: vnet must be a Uint8Array of 10 bytes per frame");
      vnet = vta.As<Napi::Uint8Array>().Data();
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
    int r = fp_.process(p, lens[i], status ? status[i] : 0, vnet ? vnet + i * kVnetLen : nullptr);
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
    Napi::Array sentVnet = Napi::Array::New(env, sink.lens.size());
    for (size_t i = 0; i < sink.lens.size(); i++)
      sentVnet.Set(static_cast<uint32_t>(i),
                   Napi::Buffer<uint8_t>::Copy(env, sink.vnets.data() + i * kVnetLen, kVnetLen));
    result.Set("sentVnet", sentVnet);
  } else {
    result.Set("sent", env.Null());
    result.Set("sentVnet", env.Null());
  }
  return result;
}

void Dataplane::teardown() {
  rp_.close();
  txEgress_.close();
  txCapture_.close();
  releaseRefs();  // the Forwarder's arrays and the callbacks are no longer held
}

Napi::Value Dataplane::Close(const Napi::CallbackInfo& info) {
  if (rp_.inLive) {
    // Called from a callback of this very wake-up: finish the batch first.
    rp_.closeRequested = true;
    rp_.stop();
  } else {
    teardown();
  }
  return info.Env().Undefined();
}

Napi::Value Dataplane::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber())
    return throwError(env, "send(buf: Uint8Array, len: number, vnet?: Uint8Array)");
  auto ta = info[0].As<Napi::TypedArray>();
  if (ta.TypedArrayType() != napi_uint8_array) return throwError(env, "send: buf must be a Uint8Array");
  auto buf = ta.As<Napi::Uint8Array>();
  const uint8_t* vnet = nullptr;
  if (info.Length() >= 3 && info[2].IsTypedArray()) {
    auto vta = info[2].As<Napi::TypedArray>();
    if (vta.TypedArrayType() != napi_uint8_array || vta.ByteLength() < kVnetLen)
      return throwError(env, "send: vnet must be a Uint8Array of 10 bytes");
    vnet = vta.As<Napi::Uint8Array>().Data();
  }
  double l = info[1].As<Napi::Number>().DoubleValue();
  if (!(l >= 0) || l > double(buf.ByteLength())) return Napi::Boolean::New(env, false);
  TxSocket* tx = txCapture_.isOpen() ? &txCapture_ : &txEgress_;
  return Napi::Boolean::New(env, tx->sendOne(buf.Data(), static_cast<uint32_t>(l), vnet));
}

Napi::Value Dataplane::SetFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return throwError(env, "setFilter(filter: string)");
  std::string err;
  if (!rp_.setFilter(info[0].As<Napi::String>().Utf8Value(), &err)) return throwError(env, err);
  return env.Undefined();
}

Napi::Value Dataplane::Stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("frames", fp_.stats.frames);
  o.Set("upcalls", fp_.stats.upcalls);
  o.Set("upcallNs", fp_.stats.upcallNs);
  o.Set("sendNs", fp_.stats.sendNs);
  o.Set("busyNs", busyNs_);
  o.Set("ringWaitNs", ringWaitNs_);
  o.Set("ringWaitFrames", ringWaitFrames_);
  o.Set("slowPath", fp_.stats.slowPath);
  o.Set("csumFixed", fp_.stats.csumFixed);
  o.Set("flushes", fp_.stats.flushes);
  o.Set("sendFailed", fp_.stats.sendFailed);
  o.Set("copied", copied_);
  o.Set("truncated", truncated_);
  o.Set("vnet", rp_.ring.vnet() && fp_.txVnet);
  o.Set("wakeups", wakeups_);
  o.Set("liveFrames", liveFrames_);
  o.Set("busyPollCatches", busyPollCatches_);
  rp_.setStats(o);  // ringPackets, ringDrops, pollErrors
  o.Set("sendSyscalls", double(txEgress_.syscalls + txCapture_.syscalls));
  o.Set("lastSendErrno", txEgress_.lastErrno);
  o.Set("live", rp_.ring.isOpen());
  o.Set("polling", rp_.polling());
  return o;
}

namespace {

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
  const char* dropNames[] = {"truncated",   "not_ipv4",      "bad_ip_header",     "fragment",       "unsupported",
                             "not_our_mac", "no_connection", "no_real_server",    "table_full",     "no_mac",
                             "send_failed", "too_big",       "icmp_unknown_flow", "gso_unsupported"};
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
  // conn_reuse_mode: the states reuseReschedules() compares with, by mode.
  Napi::Array reuse = Napi::Array::New(env, 3);
  for (uint32_t m = 0; m < 3; m++) {
    uint32_t bits = 0;
    for (uint32_t s = 0; s < 32; s++)
      if (reuseReschedules(static_cast<uint8_t>(m), static_cast<uint8_t>(s))) bits |= 1u << s;
    reuse.Set(m, bits);
  }
  c.Set("reuseStates", reuse);
  // opensOnMiss(): for svcFlags 0 and SVC_F_ON_MISS_HASH, bit f set when TCP flags f (0..31) open an entry.
  Napi::Array miss = Napi::Array::New(env, 2);
  for (uint32_t i = 0; i < 2; i++) {
    uint32_t bits = 0;
    for (uint32_t f = 0; f < 32; f++)
      if (opensOnMiss(i == 0 ? 0 : SVC_F_ON_MISS_HASH, static_cast<uint8_t>(f))) bits |= 1u << f;
    miss.Set(i, bits);
  }
  c.Set("missOpens", miss);
  c.Set("svcFReuseMask", int(SVC_F_REUSE_MASK));
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
  initTap(env, exports);
  initNotify(env, exports);
  initStateFile(env, exports);
  exports.Set("abiVersion", 10);  // binding.ts ABI_VERSION
  return exports;
}

}  // namespace lbd

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return lbd::InitAddon(env, exports); }

NODE_API_MODULE(lbd_native, Init)
