// RingPoll (ring_poll.h): the RX ring and its uv_poll, shared by Dataplane and Capture.
#include "ring_poll.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <string>
#include <vector>

namespace lbd {

namespace {

constexpr size_t kDefaultRingBytes = 16u << 20;

}  // namespace

size_t RingPoll::ringBytesArg(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() > i && info[i].IsNumber()) {
    const double b = info[i].As<Napi::Number>().DoubleValue();
    if (b >= 65536 && b <= double(1u << 30)) return static_cast<size_t>(b);
  }
  return kDefaultRingBytes;
}

bool RingPoll::open(const Interface& itf, const std::string& filter, size_t ringBytes, bool ignoreOutgoing,
                    std::string* err) {
  std::vector<sock_filter> prog;
  if (!compileFilter(filter, &prog, err)) return false;
  if (ring.open(itf, prog, ringBytes, ignoreOutgoing, err)) return true;
  *err = "capture on \"" + itf.name + "\": " + *err;
  return false;
}

bool RingPoll::setFilter(const std::string& filter, std::string* err) {
  std::vector<sock_filter> prog;
  return compileFilter(filter, &prog, err) && ring.setFilter(prog, err);
}

void RingPoll::onPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* rp = static_cast<RingPoll*>(uv::dataOf(handle));
  if (rp == nullptr) return;
  if (status < 0) {
    // A socket error (e.g. ENETDOWN when the interface goes down; the kernel re-hooks the
    // socket when it comes back up). libuv stops the handle on POLLERR: clear the error and
    // poll again, or the capture would die silently.
    rp->onPollError(handle);
    if (uv::dataOf(handle) == nullptr) return;
  }
  rp->client_->onReadable();
}

void RingPoll::onPollError(uv_poll_t* handle) {
  pollErrors_ += 1;
  int err = 0;
  socklen_t l = sizeof err;
  if (ring.isOpen()) getsockopt(ring.fd(), SOL_SOCKET, SO_ERROR, &err, &l);
  if (!ring.isOpen() || uv_poll_start(handle, uv::kReadable, onPoll) != 0) {
    stop();
    client_->onPollLost();
  }
}

bool RingPoll::start(std::string* err) {
  uv_loop_t* loop;
  if (napi_get_uv_event_loop(env_, &loop) != napi_ok) {
    *err = "no event loop";
    return false;
  }
  if (asyncCtx_ == nullptr) {
    napi_value res, name;
    napi_create_object(env_, &res);
    napi_create_string_utf8(env_, resourceName_, NAPI_AUTO_LENGTH, &name);
    napi_create_reference(env_, res, 1, &resource_);
    napi_async_init(env_, res, name, &asyncCtx_);
  }
  int rc;
  poll_ = uv::openPoll(loop, ring.fd(), this, &rc);
  if (poll_ != nullptr) rc = uv_poll_start(poll_, uv::kReadable, onPoll);
  if (rc == 0) return true;
  stop();
  *err = std::string("uv_poll: ") + uv_strerror(rc);
  return false;
}

void RingPoll::stop() {
  if (poll_ == nullptr) return;
  uv_poll_t* p = poll_;
  poll_ = nullptr;
  uv::closePoll(p);
}

void RingPoll::close() {
  closeRequested = false;
  stop();
  ring.close();
  if (asyncCtx_ != nullptr) napi_async_destroy(env_, asyncCtx_);
  asyncCtx_ = nullptr;
  if (resource_ != nullptr) napi_delete_reference(env_, resource_);
  resource_ = nullptr;
}

void RingPoll::setStats(Napi::Object o) {
  uint64_t pk, dr;
  ring.readStats(&pk, &dr);
  ringPackets_ += double(pk);
  ringDrops_ += double(dr);
  o.Set("ringPackets", ringPackets_);
  o.Set("ringDrops", ringDrops_);
  o.Set("pollErrors", pollErrors_);
}

void RingPoll::openScopes() {
  napi_open_handle_scope(env_, &hs_);
  napi_value res;
  napi_get_reference_value(env_, resource_, &res);
  // A callback scope: when it closes, process.nextTick callbacks and promise jobs run, as
  // after any event delivered by libuv.
  if (napi_open_callback_scope(env_, res, asyncCtx_, &cs_) != napi_ok) cs_ = nullptr;
}

void RingPoll::closeScopes() {
  if (cs_ != nullptr) napi_close_callback_scope(env_, cs_);
  cs_ = nullptr;
  if (pendingError != nullptr) {
    // Like an exception thrown from any event handler: 'uncaughtException'.
    napi_fatal_exception(env_, pendingError);
    pendingError = nullptr;
  }
  napi_close_handle_scope(env_, hs_);
  hs_ = nullptr;
}

}  // namespace lbd
