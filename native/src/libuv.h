// What the addon uses of libuv: a poll handle on a socket in Node's own event loop. Node exports
// libuv's symbols, so an addon resolves them at load time like the napi_* ones, but the
// Node-API headers (npm node-api-headers) do not ship <uv.h>. These declarations are libuv 1.x's
// stable API; uv_poll_t stays opaque (its size comes from uv_handle_size(), its data pointer
// through uv_handle_get/set_data), so no struct layout of any libuv version is compiled in.
#pragma once
#include <cstddef>
#include <cstdlib>

extern "C" {

struct uv_loop_s;  // node_api.h declares napi_get_uv_event_loop() with it
typedef struct uv_loop_s uv_loop_t;
typedef struct uv_handle_s uv_handle_t;
typedef struct uv_poll_s uv_poll_t;
typedef void (*uv_poll_cb)(uv_poll_t* handle, int status, int events);
typedef void (*uv_close_cb)(uv_handle_t* handle);

size_t uv_handle_size(int type);  // uv_handle_type: an int-sized C enum
void* uv_handle_get_data(const uv_handle_t* handle);
void uv_handle_set_data(uv_handle_t* handle, void* data);
int uv_is_active(const uv_handle_t* handle);
void uv_close(uv_handle_t* handle, uv_close_cb close_cb);
int uv_poll_init(uv_loop_t* loop, uv_poll_t* handle, int fd);
int uv_poll_start(uv_poll_t* handle, int events, uv_poll_cb cb);
int uv_poll_stop(uv_poll_t* handle);
const char* uv_strerror(int err);
}

namespace lbd {
namespace uv {

constexpr int kPollHandle = 8;  // UV_POLL in uv_handle_type
constexpr int kReadable = 1;    // UV_READABLE in uv_poll_event

inline uv_handle_t* handle(uv_poll_t* p) { return reinterpret_cast<uv_handle_t*>(p); }

/** A poll handle on fd with `data` attached; nullptr and *rc on failure. */
inline uv_poll_t* openPoll(uv_loop_t* loop, int fd, void* data, int* rc) {
  auto* p = static_cast<uv_poll_t*>(std::calloc(1, uv_handle_size(kPollHandle)));
  if (p == nullptr) {
    *rc = -12;  // UV_ENOMEM
    return nullptr;
  }
  *rc = uv_poll_init(loop, p, fd);
  if (*rc != 0) {
    std::free(p);
    return nullptr;
  }
  uv_handle_set_data(handle(p), data);
  return p;
}

inline void* dataOf(uv_poll_t* p) { return uv_handle_get_data(handle(p)); }

/** Stops the handle and frees it once libuv is done with it. */
inline void closePoll(uv_poll_t* p) {
  uv_handle_set_data(handle(p), nullptr);
  if (uv_is_active(handle(p))) uv_poll_stop(p);
  uv_close(handle(p), [](uv_handle_t* h) { std::free(h); });
}

}  // namespace uv
}  // namespace lbd
