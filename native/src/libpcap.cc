#include "libpcap.h"

#include <dlfcn.h>

#include <cstring>

// glibc 2.34 moved dlopen & co. from libdl into libc under a new symbol version; bound to that
// version, a binary built on a newer system would not load on an older one. The old versions
// stay in both (libdl.so.2 is linked for the older systems, where they live there).
#if defined(__x86_64__)
#define LBD_DL_VERSION "GLIBC_2.2.5"
#elif defined(__aarch64__)
#define LBD_DL_VERSION "GLIBC_2.17"
#endif
#ifdef LBD_DL_VERSION
__asm__(".symver dlopen,dlopen@" LBD_DL_VERSION);
__asm__(".symver dlsym,dlsym@" LBD_DL_VERSION);
__asm__(".symver dlclose,dlclose@" LBD_DL_VERSION);
__asm__(".symver dlerror,dlerror@" LBD_DL_VERSION);
#endif

namespace lbd {
namespace pcap {

namespace {

struct Handle;  // pcap_t

struct Api {
  const char* soname = nullptr;
  Handle* (*openDead)(int linktype, int snaplen) = nullptr;
  int (*compile)(Handle* p, Program* prog, const char* expr, int optimize, uint32_t netmask) = nullptr;
  void (*freecode)(Program* prog) = nullptr;
  char* (*geterr)(Handle* p) = nullptr;
  void (*close)(Handle* p) = nullptr;
};

Api api;  // filled once; the library stays loaded for the life of the process

template <typename F>
bool resolve(void* lib, const char* name, F* fn, const char* soname, std::string* err) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (*fn != nullptr) return true;
  *err = std::string("libpcap (") + soname + ") lacks " + name + ": install " + kPackage;
  return false;
}

bool bind(void* lib, const char* soname, std::string* err) {
  Api a;
  a.soname = soname;
  if (!resolve(lib, "pcap_open_dead", &a.openDead, soname, err) ||
      !resolve(lib, "pcap_compile", &a.compile, soname, err) ||
      !resolve(lib, "pcap_freecode", &a.freecode, soname, err) ||
      !resolve(lib, "pcap_geterr", &a.geterr, soname, err) || !resolve(lib, "pcap_close", &a.close, soname, err))
    return false;
  api = a;
  return true;
}

}  // namespace

const char* load(std::string* err) {
  if (api.soname != nullptr) return api.soname;
  // Nothing cached on failure: a libpcap installed while lbd runs is found on the next reload.
  std::string first;
  for (const char* soname : kSonames) {
    void* lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
      if (first.empty()) first = dlerror();
      continue;
    }
    if (bind(lib, soname, err)) return api.soname;
    // A library by this name that lacks a function we need: try the next name, and if none
    // serves, say what this one lacked.
    dlclose(lib);
    if (first.empty()) first = *err;
  }
  *err = std::string("libpcap is not installed (") + kSonames[0] + "): apt-get install " + kPackage;
  // A library that is there but does not load (wrong architecture, broken) is worth naming.
  if (first.find("No such file") == std::string::npos) *err += " (" + first + ")";
  return nullptr;
}

bool compile(const std::string& expr, std::vector<sock_filter>* out, std::string* err) {
  if (load(err) == nullptr) return false;
  Handle* p = api.openDead(kDltEn10mb, 262144);
  if (p == nullptr) {
    *err = "pcap_open_dead failed";
    return false;
  }
  Program prog = {0, nullptr};
  if (api.compile(p, &prog, expr.c_str(), 1, kNetmaskUnknown) != 0) {
    *err = std::string("bad capture filter \"") + expr + "\": " + api.geterr(p);
    api.close(p);
    return false;
  }
  out->assign(prog.insns, prog.insns + prog.len);
  api.freecode(&prog);
  api.close(p);
  return true;
}

}  // namespace pcap
}  // namespace lbd
