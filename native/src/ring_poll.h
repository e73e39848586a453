// RingPoll: what Dataplane (the fast path's live loop) and Capture (the TypeScript path's port)
// share of a live capture: the TPACKET_V2 RX ring with its libpcap-compiled filter, the uv_poll
// on it in Node's event loop (restarted after a socket error), the ring's statistics, and the
// scopes a wake-up opens when it calls into JavaScript (a handle scope and a callback scope on
// an async context, so process.nextTick callbacks and promise jobs run afterwards as after any
// I/O event, and an exception is re-raised as 'uncaughtException'). What a wake-up does with the
// frames is the owner's: RingPoll calls its Client once per wake-up, never per frame.
#pragma once
#include <napi.h>

#include <cstddef>
#include <string>

#include "afpacket.h"
#include "libuv.h"

namespace lbd {

class RingPoll {
 public:
  /** The owner: Dataplane or Capture. */
  class Client {
   public:
    /** The ring is readable: take the frames ready (the owner's loop over ring.frame()). */
    virtual void onReadable() = 0;
    /** A socket error could not be cleared and polling has stopped: release what polling held. */
    virtual void onPollLost() = 0;

   protected:
    ~Client() = default;
  };

  /** resourceName: the async resource's name, as async_hooks show it. */
  RingPoll(napi_env env, Client* client, const char* resourceName)
      : env_(env), client_(client), resourceName_(resourceName) {}
  RingPoll(const RingPoll&) = delete;
  RingPoll& operator=(const RingPoll&) = delete;
  ~RingPoll() { close(); }

  /** The ring size argument info[i] when it is a number in range, else the default (16 MB). */
  static size_t ringBytesArg(const Napi::CallbackInfo& info, size_t i);

  /** Compiles the filter and opens the ring on itf; false with the message to throw. */
  bool open(const Interface& itf, const std::string& filter, size_t ringBytes, bool ignoreOutgoing, std::string* err);
  /** Compiles the filter and puts it on the open ring in place of the old one. */
  bool setFilter(const std::string& filter, std::string* err);
  /** Starts polling the open ring; false with the message to throw. */
  bool start(std::string* err);
  /** Stops polling (the handle is freed once libuv is done with it). */
  void stop();
  bool polling() const { return poll_ != nullptr; }
  /** Stops polling, closes the ring and releases the async context. */
  void close();

  /** Sets ringPackets, ringDrops and pollErrors on a stats() object, the kernel's counts read first. */
  void setStats(Napi::Object o);

  /** Whether this wake-up's scopes are open (its first call into JavaScript opened them). */
  bool inScopes() const { return hs_ != nullptr; }
  /** Opens this wake-up's handle scope and callback scope. */
  void openScopes();
  /** Closes them, re-raising a pending exception as 'uncaughtException'. */
  void closeScopes();

  RxRing ring;
  // The current wake-up, as the owner runs it: inLive while it takes frames; closeRequested
  // when close() came from a callback of it (the owner tears down once it is over);
  // pendingError, the exception of a call into JavaScript that ended it.
  bool inLive = false;
  bool closeRequested = false;
  napi_value pendingError = nullptr;

 private:
  static void onPoll(uv_poll_t* handle, int status, int events);
  void onPollError(uv_poll_t* handle);

  napi_env env_;
  Client* client_;
  const char* resourceName_;
  uv_poll_t* poll_ = nullptr;
  napi_async_context asyncCtx_ = nullptr;
  napi_ref resource_ = nullptr;
  napi_handle_scope hs_ = nullptr;
  napi_callback_scope cs_ = nullptr;
  double ringPackets_ = 0;
  double ringDrops_ = 0;
  double pollErrors_ = 0;
};

}  // namespace lbd
