// openTap()/closeTap() exports (tap.cc): local_access's interface that dies with the process.
#pragma once
#include <napi.h>

namespace lbd {
void initTap(Napi::Env env, Napi::Object exports);
}
