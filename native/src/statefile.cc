// The shared state in a file. mapStateFile() maps a file (on tmpfs: /run) MAP_SHARED into an
// ArrayBuffer that the Forwarder lays its region over, so every write either path makes is in the
// file the moment it is made, whatever ends the process (exit, crash, SIGKILL), and the next lbd
// reads the table as it was. lockFile() is the instance lock: an flock on a file next to it, held
// by the descriptor, which the kernel releases however the process ends, so a lock is never left
// behind by a dead lbd and never taken from a live one.
#include "statefile.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace lbd {

namespace {

// stat() and fstat() by system call: glibc 2.33 made them symbols of that version, and the addon
// must load on glibc 2.17 (scripts/compile-native.sh). The kernel's struct stat is glibc's on the
// architectures lbd builds for (x86_64, and arm64's generic layout).
int statFd(int fd, struct stat* st) { return int(syscall(SYS_fstat, fd, st)); }
int statPath(const std::string& path, struct stat* st) {
  return int(syscall(SYS_newfstatat, AT_FDCWD, path.c_str(), st, 0));
}

Napi::Value fail(Napi::Env env, const std::string& msg, const char* code) {
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

void unmap(napi_env /*env*/, void* data, size_t* bytes) {
  munmap(data, *bytes);
  delete bytes;
}

/** An ArrayBuffer over a mapping, unmapped when collected; nothing stays mapped when it cannot be made. */
Napi::Value wrapMapping(Napi::Env env, void* p, size_t bytes) {
  size_t* hint = new size_t(bytes);
  napi_value ab = nullptr;
  const auto finalize = [](napi_env, void* data, void* h) { unmap(nullptr, data, static_cast<size_t*>(h)); };
  if (napi_create_external_arraybuffer(env, p, bytes, finalize, hint, &ab) != napi_ok) {
    // External buffers refused (a runtime with the V8 sandbox).
    munmap(p, bytes);
    delete hint;
    return fail(env, "this Node.js does not allow external ArrayBuffers: the state file cannot be mapped",
                "E_STATE_FILE");
  }
  return Napi::Value(env, ab);
}

/**
 * Writes one byte of every page of a new mapping (zero over zero): each page's fault is taken
 * here, at start, not by the first flow that lands on it. A table touched at random slots would
 * otherwise fault page after page for its first minutes, inside upcalls and lookups (measured in
 * the lab: a new flow's upcall 17–25 µs instead of 4, where a fault is a trip to the hypervisor).
 */
static void prefault(void* p, size_t bytes) {
  const long page = sysconf(_SC_PAGESIZE);
  const size_t step = page > 0 ? size_t(page) : 4096;
  volatile uint8_t* q = static_cast<volatile uint8_t*>(p);
  for (size_t i = 0; i < bytes; i += step) q[i] = 0;
}

/**
 * mapStateFile(path, bytes): a new file `path` (mode 0600; an existing one is truncated) of
 * `bytes` zero bytes, mapped shared: an ArrayBuffer whose writes are the file's. Unmapped when the
 * ArrayBuffer is collected or the process ends; the file stays. Every block is allocated now
 * (posix_fallocate): a sparse file on a full tmpfs would kill the process with SIGBUS at the
 * first write to a new page, long after start; this way a /run too small fails here, with a reason.
 */
Napi::Value MapStateFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsNumber())
    return fail(env, "mapStateFile(path, bytes): a path and a size", "EINVAL");
  const std::string path = info[0].As<Napi::String>();
  const double want = info[1].As<Napi::Number>().DoubleValue();
  if (!(want > 0) || want > double(1ull << 40)) return fail(env, "mapStateFile: size out of range", "EINVAL");
  const size_t bytes = size_t(want);
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    const int e = errno;
    return fail(env, "cannot create " + path + ": " + strerror(e), "E_STATE_FILE");
  }
  struct stat st {};
  if (statFd(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fail(env, path + " is not a regular file", "E_STATE_FILE");
  }
  const int e0 = posix_fallocate(fd, 0, off_t(bytes));  // returns the error, errno untouched
  if (e0 != 0) {
    close(fd);
    unlink(path.c_str());
    return fail(
        env,
        "cannot allocate " + std::to_string(bytes >> 20) + " MiB for " + path + ": " + strerror(e0) +
            (e0 == ENOSPC ? " (its file system is full: a larger tmpfs, or a smaller connection_table.size)" : ""),
        "E_STATE_FILE");
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  const int e = errno;
  close(fd);  // the mapping holds the file
  if (p == MAP_FAILED) return fail(env, "cannot map " + path + ": " + strerror(e), "E_STATE_FILE");
  prefault(p, bytes);
  return wrapMapping(env, p, bytes);
}

/**
 * mapExistingFile(path): an existing file mapped private (copy-on-write: a write stays in this
 * process), as an ArrayBuffer of the file's size: the previous lbd's state file, read in place
 * instead of copied (a 1M-entry table is 56 MiB). Throws ENOENT when there is none.
 */
Napi::Value MapExistingFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "mapExistingFile(path): a path", "EINVAL");
  const std::string path = info[0].As<Napi::String>();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    const int e = errno;
    return fail(env, "cannot open " + path + ": " + strerror(e), e == ENOENT ? "ENOENT" : "E_STATE_FILE");
  }
  struct stat st {};
  if (statFd(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
    close(fd);
    return fail(env, path + " is not a regular file with content", "E_STATE_FILE");
  }
  const size_t bytes = size_t(st.st_size);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int e = errno;
  close(fd);
  if (p == MAP_FAILED) return fail(env, "cannot map " + path + ": " + strerror(e), "E_STATE_FILE");
  return wrapMapping(env, p, bytes);
}

/**
 * lockFile(path): takes an exclusive flock on `path` (created 0600 if missing) and returns the
 * descriptor, which holds it until closed or the process ends; throws code EWOULDBLOCK when
 * another process holds it. The lock must be on the file that has the name now: a file unlinked
 * (and made anew by someone) between open and flock is let go and the name tried again.
 */
Napi::Value LockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) return fail(env, "lockFile(path): a path", "EINVAL");
  const std::string path = info[0].As<Napi::String>();
  for (int attempt = 0; attempt < 8; attempt++) {
    const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      const int e = errno;
      return fail(env, "cannot open " + path + ": " + strerror(e), "E_STATE_FILE");
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int e = errno;
      close(fd);
      if (e == EWOULDBLOCK) return fail(env, path + " is locked by another process", "EWOULDBLOCK");
      return fail(env, "cannot lock " + path + ": " + strerror(e), "E_STATE_FILE");
    }
    struct stat held {
    }, named{};
    if (statFd(fd, &held) == 0 && statPath(path, &named) == 0 && held.st_dev == named.st_dev &&
        held.st_ino == named.st_ino)
      return Napi::Number::New(env, fd);
    close(fd);
  }
  return fail(env, "cannot lock " + path + ": it keeps being replaced", "E_STATE_FILE");
}

/** unlockFile(fd): closes lockFile's descriptor, which releases the lock. */
Napi::Value UnlockFile(const Napi::CallbackInfo& info) {
  if (info.Length() >= 1 && info[0].IsNumber()) {
    const int fd = info[0].As<Napi::Number>().Int32Value();
    if (fd >= 0) close(fd);
  }
  return info.Env().Undefined();
}

}  // namespace

void initStateFile(Napi::Env env, Napi::Object exports) {
  exports.Set("mapStateFile", Napi::Function::New(env, MapStateFile, "mapStateFile"));
  exports.Set("mapExistingFile", Napi::Function::New(env, MapExistingFile, "mapExistingFile"));
  exports.Set("lockFile", Napi::Function::New(env, LockFile, "lockFile"));
  exports.Set("unlockFile", Napi::Function::New(env, UnlockFile, "unlockFile"));
}

}  // namespace lbd
