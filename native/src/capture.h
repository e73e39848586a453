// Capture: the port of the TypeScript data path (src/dataplane/io.ts RingPort). The fast path's
// AF_PACKET pieces (TPACKET_V2 ring, libpcap-compiled filter, uv_poll, send socket) with every
// frame handed to JavaScript instead of forwarded in C++.
#pragma once
#include <napi.h>

namespace lbd {

/** The Capture class for the addon's exports. */
Napi::Function initCapture(Napi::Env env);

}  // namespace lbd
