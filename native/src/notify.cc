// sdNotify(): the service manager's notification protocol (sd_notify(3)), spoken from the
// daemon's own process. systemd accepts a notification only from the unit's main PID
// (NotifyAccess=main), and a helper process such as systemd-notify may exit before systemd has
// looked up its sender (a race on systemd 252), so lbd sends the datagram itself. Node's dgram
// has no Unix datagram sockets, hence this file. listenNotify()/receiveNotify()/closeNotify()
// are the other end, for tests that stand in for systemd.
#include "notify.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

namespace lbd {

namespace {

Napi::Value fail(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

/**
 * The socket address of NOTIFY_SOCKET's value: a filesystem path, or an abstract name written
 * with a leading '@' (the first byte becomes NUL, as sd_notify does). False when it does not fit.
 */
bool notifyAddress(const std::string& where, sockaddr_un* addr, socklen_t* len) {
  *addr = sockaddr_un{};
  addr->sun_family = AF_UNIX;
  if (where.empty() || where.size() >= sizeof(addr->sun_path)) return false;
  if (where[0] != '/' && where[0] != '@') return false;
  std::memcpy(addr->sun_path, where.data(), where.size());
  if (where[0] == '@') addr->sun_path[0] = '\0';
  // An abstract name's length is exact; a path's includes its terminating NUL.
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + where.size() + (where[0] == '/' ? 1 : 0));
  return true;
}

/**
 * sdNotify(socket, message, fds?): sends `message` ("READY=1\nSTATUS=…") as one datagram to
 * `socket` (NOTIFY_SOCKET's value), with the descriptors `fds` attached (SCM_RIGHTS, for
 * FDSTORE=1). Returns 0, or the errno of the failure: the caller decides whether that matters
 * (a missing service manager must never stop the daemon).
 */
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString())
    return fail(env, "sdNotify(socket, message, fds?): socket and message must be strings");
  const std::string where = info[0].As<Napi::String>();
  const std::string message = info[1].As<Napi::String>();
  std::vector<int> fds;
  if (info.Length() >= 3 && info[2].IsArray()) {
    const Napi::Array a = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length() && i < 16; i++) fds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  }
  sockaddr_un addr;
  socklen_t addrLen = 0;
  if (!notifyAddress(where, &addr, &addrLen)) return Napi::Number::New(env, EINVAL);
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, errno);
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_name = &addr;
  msg.msg_namelen = addrLen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Room for up to 16 descriptors, aligned as a cmsghdr must be.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  // Never waits: a service manager too busy to take the datagram (its queue full) must not stall
  // the event loop, which is also the data plane's. EAGAIN is a failure like any other.
  const ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  const int err = n < 0 ? errno : 0;
  close(fd);
  return Napi::Number::New(env, err);
}

/** listenNotify(path): a bound, non-blocking Unix datagram socket at `path` (a test's systemd). */
Napi::Value ListenNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "listenNotify(path): path must be a string");
  const std::string where = info[0].As<Napi::String>();
  sockaddr_un addr;
  socklen_t addrLen = 0;
  if (!notifyAddress(where, &addr, &addrLen)) return fail(env, "listenNotify: not a socket path: " + where);
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail(env, std::string("listenNotify: socket: ") + strerror(errno));
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), addrLen) != 0) {
    const int e = errno;
    close(fd);
    return fail(env, "listenNotify: bind " + where + ": " + strerror(e));
  }
  return Napi::Number::New(env, fd);
}

/**
 * receiveNotify(fd): every datagram waiting on listenNotify's socket, oldest first, as
 * { message, fds }: the descriptors that came with it (FDSTORE=1) are open, the caller's to keep
 * or close, as systemd keeps them.
 */
Napi::Value ReceiveNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = info.Length() >= 1 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  Napi::Array out = Napi::Array::New(env);
  if (fd < 0) return out;
  char buf[4096];
  for (uint32_t i = 0;;) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) break;
    Napi::Array fds = Napi::Array::New(env);
    uint32_t nfds = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; k++) {
        int passed;
        std::memcpy(&passed, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        fds.Set(nfds++, Napi::Number::New(env, passed));
      }
    }
    Napi::Object one = Napi::Object::New(env);
    one.Set("message", Napi::String::New(env, buf, static_cast<size_t>(n)));
    one.Set("fds", fds);
    out.Set(i++, one);
  }
  return out;
}

/** closeNotify(fd): closes listenNotify's socket. */
Napi::Value CloseNotify(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber()) {
    const int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd >= 0) close(fd);
  }
  return info.Env().Undefined();
}

}  // namespace

void initNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
  exports.Set("listenNotify", Napi::Function::New(env, ListenNotify, "listenNotify"));
  exports.Set("receiveNotify", Napi::Function::New(env, ReceiveNotify, "receiveNotify"));
  exports.Set("closeNotify", Napi::Function::New(env, CloseNotify, "closeNotify"));
}

}  // namespace lbd
