// mapStateFile()/lockFile() exports (statefile.cc): the shared state kept in a file, so that the
// next lbd adopts it, and the lock that makes one lbd at a time write it.
#pragma once
#include <napi.h>

namespace lbd {
void initStateFile(Napi::Env env, Napi::Object exports);
}
