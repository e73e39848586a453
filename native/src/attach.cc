// Dataplane::attach(): takes the Forwarder's tables. Every typed array is checked (element type,
// length against the connection table's, dest table's and service table's sizes) and held by a
// reference, and C++ keeps pointers into their backing stores, which never move: the TypeScript
// side and the fast path then read and write one set of tables, with nothing to sync.
#include <napi.h>

#include <string>
#include <vector>

#include "dataplane.h"
#include "fastpath.h"

namespace lbd {

namespace {

/** obj[key] as a typed array of `type` with at least `minLen` elements. */
bool typedArray(napi_env env, napi_value obj, const char* key, napi_typedarray_type type, size_t minLen, void** data,
                size_t* length, std::vector<napi_ref>* refs, std::string* err) {
  napi_value v;
  bool is = false;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_is_typedarray(env, v, &is) != napi_ok || !is) {
    *err = std::string(key) + " is not a typed array";
    return false;
  }
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  // Getting the data pointer moves a small on-heap typed array off the heap for good, so the
  // pointer stays valid for as long as the array lives (the reference below keeps it alive).
  if (napi_get_typedarray_info(env, v, &t, length, data, &ab, &off) != napi_ok || t != type) {
    *err = std::string(key) + " has the wrong element type";
    return false;
  }
  if (*length < minLen) {
    *err = std::string(key) + " is too short (" + std::to_string(*length) + " < " + std::to_string(minLen) + ")";
    return false;
  }
  napi_ref ref;
  napi_create_reference(env, v, 1, &ref);
  refs->push_back(ref);
  return true;
}

}  // namespace

Napi::Value Dataplane::Attach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (rp_.inLive) return throwError(env, "attach() from inside a callback");
  if (info.Length() < 1 || !info[0].IsObject()) return throwError(env, "attach(tables) expects an object");
  napi_value o = info[0];
  std::vector<napi_ref> refs;
  std::string err;
  Tables t;
  size_t n, slots, dests;
  void* d;
  auto fail = [&](const std::string& m) {
    for (napi_ref r : refs) napi_delete_reference(env, r);
    return throwError(env, "attach: " + m);
  };
#define ARR(key, type, min, field, ctype, lenvar)                                      \
  if (!typedArray(env, o, key, type, min, &d, &lenvar, &refs, &err)) return fail(err); \
  t.field = static_cast<ctype*>(d);

  // Connection table: every array has the same power-of-two length.
  ARR("keyAddr", napi_uint32_array, 1, keyAddr, uint32_t, slots);
  if (slots & (slots - 1)) return fail("the connection table size is not a power of two");
  if (slots > (size_t(1) << 31)) return fail("the connection table is too large");
  ARR("keyPort", napi_uint32_array, slots, keyPort, uint32_t, n);
  ARR("dest", napi_int32_array, slots, dest, int32_t, n);
  ARR("state", napi_uint8_array, slots, state, uint8_t, n);
  ARR("flags", napi_uint8_array, slots, flags, uint8_t, n);
  ARR("expires", napi_uint32_array, slots, expires, uint32_t, n);
  t.connMask = static_cast<uint32_t>(slots - 1);
  // Real servers.
  ARR("macKnown", napi_uint8_array, 1, macKnown, uint8_t, dests);
  ARR("mac", napi_uint8_array, dests * 6, mac, uint8_t, n);
  ARR("active", napi_int32_array, dests, active, int32_t, n);
  ARR("inactive", napi_int32_array, dests, inactive, int32_t, n);
  ARR("destPackets", napi_float64_array, dests, destPackets, double, n);
  ARR("destBytes", napi_float64_array, dests, destBytes, double, n);
  ARR("downAction", napi_uint8_array, dests, downAction, uint8_t, n);
  t.nDests = static_cast<uint32_t>(dests);
  // Services.
  size_t svcSlots, statsLen;
  ARR("svcVip", napi_uint32_array, 1, svcVip, uint32_t, svcSlots);
  ARR("svcPortProto", napi_uint32_array, svcSlots, svcPortProto, uint32_t, n);
  ARR("svcMeta", napi_int32_array, svcSlots + 1, svcMeta, int32_t, n);
  ARR("svcStats", napi_float64_array, 2, svcStats, double, statsLen);
  size_t svcFlagsLen;
  ARR("svcFlags", napi_uint8_array, 1, svcFlags, uint8_t, svcFlagsLen);
  t.svcFlagsCount = static_cast<uint32_t>(svcFlagsLen);
  t.svcSlots = static_cast<uint32_t>(svcSlots);
  t.svcStatsCount = static_cast<uint32_t>(statsLen / 2);
  // Counters and parameters.
  ARR("counters", napi_float64_array, ctr::Count, counters, double, n);
  ARR("drops", napi_float64_array, drop::Count, drops, double, n);
  ARR("clock", napi_float64_array, 1, clock, double, n);
  ARR("timeouts", napi_uint32_array, kTimeoutsLen, timeouts, uint32_t, n);
  ARR("macs", napi_uint8_array, 12, macs, uint8_t, n);
  ARR("egressMtu", napi_uint32_array, 1, egressMtu, uint32_t, n);
  ARR("tcpNext", napi_uint16_array, kTcpNextStates * kTcpNextFlags, tcpNext, uint16_t, n);
  void* argsData;
  size_t scratchLen;
  void* scratchData;
  if (!typedArray(env, o, "upcallArgs", napi_uint32_array, kArgCount, &argsData, &n, &refs, &err)) return fail(err);
  if (!typedArray(env, o, "scratch", napi_uint8_array, kMaxFrame, &scratchData, &scratchLen, &refs, &err))
    return fail(err);
  void* slowVnetData;
  if (!typedArray(env, o, "slowVnet", napi_uint8_array, kVnetLen, &slowVnetData, &n, &refs, &err)) return fail(err);
#undef ARR

  napi_value sched, slow;
  napi_valuetype vt;
  if (napi_get_named_property(env, o, "schedule", &sched) != napi_ok || napi_typeof(env, sched, &vt) != napi_ok ||
      vt != napi_function)
    return fail("schedule is not a function");
  if (napi_get_named_property(env, o, "slowPath", &slow) != napi_ok || napi_typeof(env, slow, &vt) != napi_ok ||
      vt != napi_function)
    return fail("slowPath is not a function");
  napi_ref schedRef, slowRef;
  napi_create_reference(env, sched, 1, &schedRef);
  napi_create_reference(env, slow, 1, &slowRef);
  refs.push_back(schedRef);
  refs.push_back(slowRef);

  releaseRefs();
  refs_ = std::move(refs);
  fp_.t = t;
  fp_.queued = 0;
  host_.scheduleFn = schedRef;
  host_.slowFn = slowRef;
  host_.args = static_cast<uint32_t*>(argsData);
  host_.scratch = static_cast<uint8_t*>(scratchData);
  host_.scratchLen = scratchLen;
  host_.slowVnet = static_cast<uint8_t*>(slowVnetData);
  fp_.attached = true;
  return env.Undefined();
}

}  // namespace lbd
