// The Dataplane Node-API class (the fast path's face to JavaScript) and what its three source
// files share: the class itself, JsHost (its calls into JavaScript), SocketSink (its sends to the
// egress interface) and throwError. The class's code is split by concern: addon.cc (construction,
// the method table, calls into JavaScript, processFrames, close/send/setFilter/stats and the
// module's exports), attach.cc (taking the Forwarder's tables) and live.cc (the live capture loop
// on the ring's uv_poll). The ring, its poll and the wake-up's scopes are a RingPoll
// (ring_poll.h), as in Capture. One Dataplane object per daemon, main thread only (no locks).
#pragma once
#include <napi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "afpacket.h"
#include "fastpath.h"
#include "ring_poll.h"

namespace lbd {

/** Throws a JavaScript Error with the addon's prefix; returns undefined for the method to return. */
inline Napi::Value throwError(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, "lbd_native: " + msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

class Dataplane;

/** Calls into JavaScript: the scheduler upcall and the TypeScript path for ARP. */
class JsHost : public Host {
 public:
  Dataplane* owner = nullptr;
  napi_env env = nullptr;
  napi_ref scheduleFn = nullptr;
  napi_ref slowFn = nullptr;
  uint32_t* args = nullptr;    // Uint32Array shared with JS (kArgCount)
  uint8_t* scratch = nullptr;  // the frame handed to slowPath (kMaxFrame bytes or more)
  size_t scratchLen = 0;
  uint8_t* slowVnet = nullptr;  // its virtio-net header (kVnetLen bytes)
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
  bool slowPath(const uint8_t* frame, uint32_t len, const uint8_t* vnet, int* verdict) override;
};

/** Sends to the egress interface with sendmmsg. */
class SocketSink : public Sink {
 public:
  TxSocket* tx = nullptr;
  void send(TxEntry* entries, uint32_t n, uint8_t* ok) override { tx->sendBatch(entries, n, ok); }
};

class Dataplane : public Napi::ObjectWrap<Dataplane>, RingPoll::Client {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit Dataplane(const Napi::CallbackInfo& info);
  ~Dataplane() override { teardown(); }

  bool enterJs();

  napi_env env_;

 private:
  void onReadable() override;  // live.cc: every frame ready through the fast path
  void onPollLost() override {}

  Napi::Value Attach(const Napi::CallbackInfo& info);  // attach.cc
  Napi::Value ProcessFrames(const Napi::CallbackInfo& info);
  Napi::Value OpenLive(const Napi::CallbackInfo& info);  // live.cc
  Napi::Value Start(const Napi::CallbackInfo& info);     // live.cc
  Napi::Value Stop(const Napi::CallbackInfo& info);      // live.cc
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SetFilter(const Napi::CallbackInfo& info);
  Napi::Value Stats(const Napi::CallbackInfo& info);
  Napi::Value SetBusyPoll(const Napi::CallbackInfo& info);  // live.cc

  void leaveJs();
  void teardown();
  void releaseRefs();

  FastPath fp_;
  JsHost host_;
  std::vector<napi_ref> refs_;  // the attached typed arrays and callbacks stay alive

  Interface capIf_, egIf_;
  // The ring, its uv_poll, the wake-up's scopes (opened only when it calls into JavaScript).
  RingPoll rp_;
  TxSocket txEgress_, txCapture_;
  SocketSink egressSink_;

  // Frames larger than a ring slot, read whole from the socket (PACKET_COPY_THRESH): each waits
  // in one of these buffers for its batch's send.
  static constexpr uint32_t kCopyBufs = 16;
  struct CopyBuf {
    uint8_t vnet[kVnetLen];
    uint8_t frame[kMaxFrame];
  };
  std::vector<CopyBuf> copyBufs_;
  uint32_t copyUsed_ = 0;
  double copied_ = 0;     // frames taken whole from the socket
  double truncated_ = 0;  // frames cut by the ring slot with no whole copy (counted truncated)

  double wakeups_ = 0;
  double liveFrames_ = 0;
  double busyNs_ = 0;          // wake-ups' work: process + upcalls + sends (+ busy-poll spins)
  double ringWaitNs_ = 0;      // frames' time in the ring before their wake-up, summed
  double ringWaitFrames_ = 0;  // the frames in that sum (those with a plausible timestamp)
  // Busy-poll catches: the ring had run dry in this wake-up and the spin caught its next frame,
  // where without busy_poll the loop would have slept in epoll and been woken again.
  double busyPollCatches_ = 0;
  uint64_t spinNs_ = 0;
};

}  // namespace lbd
