// The data-plane contract, mirrored from src/dataplane/contract.ts. Change a number there,
// change it here: src/dataplane/native.ts compares the values this addon exports (see
// addon.cc: exportContract) with contract.ts at load time and refuses a mismatched addon.
#pragma once
#include <cstdint>

namespace lbd {

// ---- Frame layout (Ethernet II, IPv4, TCP/UDP) ----
constexpr uint32_t ETH_DST = 0;
constexpr uint32_t ETH_SRC = 6;
constexpr uint32_t ETH_TYPE = 12;
constexpr uint32_t ETH_HLEN = 14;
constexpr uint32_t ETHERTYPE_IPV4 = 0x0800;
constexpr uint32_t ETHERTYPE_ARP = 0x0806;
constexpr uint32_t IP_VER_IHL = ETH_HLEN + 0;
constexpr uint32_t IP_TOTAL_LEN = ETH_HLEN + 2;
constexpr uint32_t IP_FRAG = ETH_HLEN + 6;
constexpr uint32_t IP_PROTO = ETH_HLEN + 9;
constexpr uint32_t IP_SRC = ETH_HLEN + 12;
constexpr uint32_t IP_DST = ETH_HLEN + 16;
constexpr uint32_t IP_MIN_HLEN = 20;
constexpr uint32_t IP_MF = 0x2000;
constexpr uint32_t IP_OFFSET_MASK = 0x1fff;
constexpr uint8_t IPPROTO_TCP_ = 6;
constexpr uint8_t IPPROTO_UDP_ = 17;
constexpr uint32_t L4_SRC_PORT = 0;
constexpr uint32_t L4_DST_PORT = 2;
constexpr uint32_t TCP_FLAGS = 13;
constexpr uint32_t TCP_MIN_HLEN = 20;
constexpr uint32_t UDP_HLEN = 8;
constexpr uint8_t TCP_FIN = 0x01;
constexpr uint8_t TCP_SYN = 0x02;
constexpr uint8_t TCP_RST = 0x04;
constexpr uint8_t TCP_ACK = 0x10;

// ---- Verdicts ----
enum Verdict : int { kForward = 0, kDrop = 1, kArp = 2 };

// ---- Drop reasons (index into the drops Float64Array) ----
namespace drop {
enum : int {
  Truncated = 0,
  NotIpv4 = 1,
  BadIpHeader = 2,
  Fragment = 3,
  Unsupported = 4,
  NotOurMac = 5,
  NoConnection = 6,
  NoRealServer = 7,
  TableFull = 8,
  NoMac = 9,
  SendFailed = 10,
  TooBig = 11,
  IcmpUnknownFlow = 12,
  GsoUnsupported = 13,
  Count = 14,
};
}

// ---- Global counters (index into the counters Float64Array) ----
namespace ctr {
enum : int {
  RxFrames = 0,
  RxBytes = 1,
  TxFrames = 2,
  TxBytes = 3,
  ArpFrames = 4,
  NewConns = 5,
  ExpiredConns = 6,
  IcmpForwarded = 7,
  IcmpTooBigSent = 8,
  SuperFrames = 9,
  SoftwareSegments = 10,
  Count = 11,
};
}

// ---- Connection states (IPVS numbering) ----
namespace state {
enum : uint8_t {
  None = 0,
  Established = 1,
  SynSent = 2,
  SynRecv = 3,
  FinWait = 4,
  TimeWait = 5,
  Close = 6,
  CloseWait = 7,
  LastAck = 8,
  Listen = 9,
  SynAck = 10,
  Udp = 11,
  Template = 12,
};
}

// ---- conn_reuse_mode (contract.ts reuseReschedules(): IPVS's is_new_conn_expected()) ----
/** Mode 0: never; TIME_WAIT and CLOSE under 1 and 2; FIN_WAIT too under bit 2 (DR: NOOUTPUT). */
inline bool reuseReschedules(uint8_t mode, uint8_t st) {
  if (mode == 0) return false;
  return st == state::TimeWait || st == state::Close || ((mode & 2) != 0 && st == state::FinWait);
}

// ---- svcFlags bits (contract.ts SVC_F_*, opensOnMiss()) ----
constexpr uint8_t SVC_F_REUSE_MASK = 3;
constexpr uint8_t SVC_F_ON_MISS_HASH = 4;
/** A TCP segment without an entry may open one: a SYN, or under on_miss: hash one with ACK and neither SYN nor RST. */
inline bool opensOnMiss(uint8_t svcFlags, uint8_t tcpFlags) {
  const uint8_t f = tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST);
  return f == TCP_SYN || ((svcFlags & SVC_F_ON_MISS_HASH) != 0 && f == TCP_ACK);
}

constexpr int32_t SLOT_EMPTY = -1;
constexpr uint8_t CONN_F_INACTIVE = 1;
// CONN_F_PERSIST = 2 is set and read by TypeScript only (persistence templates); C++ keeps it.

/** contract.ts flowHash(): Math.imul is a wrapping 32-bit multiply. */
inline uint32_t flowHash(uint32_t addr, uint32_t port) {
  uint32_t h = (addr ^ (port * 0x9e3779b1u)) * 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

}  // namespace lbd
