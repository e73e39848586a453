// openTap()/closeTap(): a TAP interface that exists exactly as long as lbd holds it. local_access
// routes the host's own connections to the VIPs through it; being non-persistent, the kernel
// deletes it, and every route through it, when the descriptor closes, and a process's
// descriptors close however it ends (exit, crash, SIGKILL). So a dead lbd never leaves routes
// that send the host's traffic into an interface nobody reads. Nothing reads the descriptor:
// lbd captures the frames the host sends into the TAP with a packet socket (outbound), and the
// kernel drops what overflows the device's queue.
#include "tap.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <napi.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace lbd {

namespace {

// (Not dataplane.h's throwError: the kernel's if_tun.h brings if_ether.h, whose ETH_HLEN macro
// clashes with contract.h's constant.)
Napi::Value fail(Napi::Env env, const std::string& msg) {
  Napi::Error::New(env, msg).ThrowAsJavaScriptException();
  return env.Undefined();
}

/**
 * openTap(name, multiQueue?): the descriptor of a new TAP interface `name` (down, no address);
 * throws the reason. With multiQueue (IFF_MULTI_QUEUE), a second process may attach a queue to
 * the same interface while the first still holds one, and the interface lives until the last
 * descriptor closes: how a restarting lbd takes over its announce interface without the routes
 * through it ever going away.
 */
Napi::Value OpenTap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "openTap(name): name must be a string");
  const std::string name = info[0].As<Napi::String>();
  const bool multiQueue = info.Length() >= 2 && info[1].IsBoolean() && info[1].As<Napi::Boolean>().Value();
  if (name.empty() || name.size() >= IFNAMSIZ)
    return fail(env, "interface name \"" + name + "\" must be 1 to 15 characters");
  const int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int e = errno;
    // EACCES: lbd runs as its own user and the node is not 0666 as Debian's udev makes it.
    const char* why =
        e == EACCES
            ? " (lbd's user may not open it: udev makes it mode 0666 on a standard host; chmod 0666 /dev/net/tun)"
        : e == ENOENT ? " (load the tun module: modprobe tun)"
                      : "";
    return fail(env, std::string("cannot open /dev/net/tun: ") + strerror(e) + why);
  }
  ifreq ifr{};
  ifr.ifr_flags = static_cast<short>(IFF_TAP | IFF_NO_PI | (multiQueue ? IFF_MULTI_QUEUE : 0));
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
    const int e = errno;
    close(fd);
    const char* why = e == EBUSY    ? " (another process holds it)"
                      : e == EINVAL ? " (an interface of another kind, or a TAP with other flags, has that name)"
                                    : "";
    return fail(env, "cannot create TAP interface " + name + ": " + strerror(e) + why);
  }
  // A persistent TAP of that name (`ip tuntap add`) would be attached to, not made, and would
  // outlive lbd with its routes: refuse it.
  ifreq got{};
  if (ioctl(fd, TUNGETIFF, &got) == 0 && (got.ifr_flags & IFF_PERSIST) != 0) {
    close(fd);
    return fail(env, "a persistent TAP interface " + name +
                         " exists (made by ip tuntap add?): delete it (ip link del " + name + ")");
  }
  return Napi::Number::New(env, fd);
}

/** closeTap(fd): closes the descriptor; the kernel deletes the interface and its routes. */
Napi::Value CloseTap(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber()) {
    const int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd >= 0) close(fd);
  }
  return info.Env().Undefined();
}

}  // namespace

void initTap(Napi::Env env, Napi::Object exports) {
  exports.Set("openTap", Napi::Function::New(env, OpenTap, "openTap"));
  exports.Set("closeTap", Napi::Function::New(env, CloseTap, "closeTap"));
}

}  // namespace lbd
