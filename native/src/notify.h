// sdNotify() and its test listener (notify.cc): the service manager's notification socket.
#pragma once
#include <napi.h>

namespace lbd {
void initNotify(Napi::Env env, Napi::Object exports);
}
