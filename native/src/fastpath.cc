#include "fastpath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ctime>

namespace lbd {

uint32_t toUint32Slow(double v) {
  if (!std::isfinite(v)) return 0;
  double m = std::fmod(std::trunc(v), 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return static_cast<uint32_t>(m);
}

uint64_t monotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

static inline uint32_t be16(const uint8_t* p) { return (uint32_t(p[0]) << 8) | p[1]; }
static inline uint32_t be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | p[3];
}

// Int32Array arithmetic wraps; signed overflow in C++ must not happen.
static inline void addI32(int32_t* a, uint32_t i, int32_t d) {
  a[i] = static_cast<int32_t>(static_cast<uint32_t>(a[i]) + static_cast<uint32_t>(d));
}

void completeL4Checksum(uint8_t* p, uint32_t l4, uint32_t ipEnd, uint8_t proto) {
  uint32_t end = ipEnd;
  uint32_t csumOff;
  if (proto == IPPROTO_TCP_) {
    csumOff = l4 + 16;
  } else {
    csumOff = l4 + 6;
    // UDP's own length, when it is consistent, is what the sender summed.
    uint32_t ulen = be16(p + l4 + 4);
    if (ulen >= UDP_HLEN && l4 + ulen <= ipEnd) end = l4 + ulen;
  }
  uint32_t l4len = end - l4;
  p[csumOff] = 0;
  p[csumOff + 1] = 0;
  uint64_t sum = be16(p + IP_SRC) + be16(p + IP_SRC + 2) + be16(p + IP_DST) + be16(p + IP_DST + 2);
  sum += proto;
  sum += l4len;
  uint32_t i = l4;
  for (; i + 1 < end; i += 2) sum += be16(p + i);
  if (i < end) sum += uint32_t(p[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t cs = static_cast<uint16_t>(~sum & 0xffff);
  if (proto == IPPROTO_UDP_ && cs == 0) cs = 0xffff;
  p[csumOff] = static_cast<uint8_t>(cs >> 8);
  p[csumOff + 1] = static_cast<uint8_t>(cs & 0xff);
}

int32_t FastPath::find(uint32_t addr, uint32_t port, uint32_t* empty) const {
  const uint32_t mask = t.connMask;
  uint32_t i = flowHash(addr, port) & mask;
  for (uint32_t n = 0; n <= mask; n++) {
    if (t.dest[i] == SLOT_EMPTY) {
      *empty = i;  // where ConnTable.insert() would put the key
      return -1;
    }
    if (t.keyAddr[i] == addr && t.keyPort[i] == port) return static_cast<int32_t>(i);
    i = (i + 1) & mask;
  }
  return -1;  // a full table without the key (the table is kept at most half full)
}

// Forwarder.track(): input-only TCP state tracking and the entry's new expiry.
void FastPath::track(uint32_t slot, uint8_t proto, uint8_t tcpFlags) {
  const double now = t.clock[0];
  if (proto != IPPROTO_TCP_) {
    t.expires[slot] = toUint32(now + t.timeouts[kUdpTimeoutIndex]);
    return;
  }
  const uint8_t old = t.state[slot];
  const uint32_t bits = (tcpFlags & (TCP_FIN | TCP_SYN | TCP_RST)) | ((tcpFlags & TCP_ACK) >> 1);
  const uint16_t next = t.tcpNext[uint32_t(old) * kTcpNextFlags + bits];
  const bool undef = next == kUndefinedState;
  if (undef || next != old) {
    t.state[slot] = undef ? 0 : static_cast<uint8_t>(next);  // Uint8Array stores undefined as 0
    const int32_t dest = t.dest[slot];
    const bool inRange = static_cast<uint32_t>(dest) < t.nDests;
    const bool inactive = (t.flags[slot] & CONN_F_INACTIVE) != 0;
    if (inactive && !undef && next == state::Established) {
      t.flags[slot] &= static_cast<uint8_t>(~CONN_F_INACTIVE);
      if (inRange) {
        addI32(t.active, dest, 1);
        addI32(t.inactive, dest, -1);
      }
    } else if (!inactive && (undef || next != state::Established)) {
      t.flags[slot] |= CONN_F_INACTIVE;
      if (inRange) {
        addI32(t.active, dest, -1);
        addI32(t.inactive, dest, 1);
      }
    }
  }
  // tcpTimeout[next]: undefined (→ NaN → 0) beyond the table, as in TypeScript.
  t.expires[slot] = (!undef && next < kTcpTimeoutCount) ? toUint32(now + t.timeouts[next]) : 0;
}

namespace {
constexpr uint8_t kIpProtoIcmp = 1;
constexpr uint32_t kIpDf = 0x4000;
const uint8_t kNoVnet[kVnetLen] = {0};
inline uint32_t u16h(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
}  // namespace

int FastPath::handOff(const uint8_t* p, uint32_t len, const uint8_t* vnet, int verdict) {
  stats.slowPath += 1;
  return host->slowPath(p, len, vnet, &verdict) ? verdict : -1;
}

int FastPath::process(uint8_t* p, uint32_t len, uint32_t status, const uint8_t* vnet) {
  stats.frames += 1;
  double* c = t.counters;
  const uint8_t* vh = vnet != nullptr ? vnet : kNoVnet;
  // A VLAN tag the kernel stripped: libpcap puts it back, so the TypeScript path sees an
  // 802.1Q frame 4 bytes longer, which it does not handle.
  if (status & kStatusVlan) {
    c[ctr::RxFrames] += 1;
    c[ctr::RxBytes] += double(len) + 4;
    return dropFrame(len + 4 < ETH_HLEN ? drop::Truncated : drop::NotIpv4);
  }
  // ARP goes to the TypeScript path whole: Forwarder.process() counts it and calls onArp.
  if (len >= ETH_HLEN && be16(p + ETH_TYPE) == ETHERTYPE_ARP) return handOff(p, len, vh, kArp);
  // ICMP (errors about a flow's replies, "fragmentation needed", echo): the TypeScript path
  // decides everything about it (Forwarder.process), counting included.
  if (len >= ETH_HLEN + IP_MIN_HLEN && be16(p + ETH_TYPE) == ETHERTYPE_IPV4 && p[IP_PROTO] == kIpProtoIcmp)
    return handOff(p, len, vh, kDrop);
  c[ctr::RxFrames] += 1;
  c[ctr::RxBytes] += len;
  const uint8_t gsoType = vh[kVnetGsoType];
  if (gsoType != kGsoNone) c[ctr::SuperFrames] += 1;

  // ---- parse (packet.ts parse()), every read bounds-checked against len ----
  if (len < ETH_HLEN) return dropFrame(drop::Truncated);
  if (be16(p + ETH_TYPE) != ETHERTYPE_IPV4) return dropFrame(drop::NotIpv4);
  if (len < ETH_HLEN + IP_MIN_HLEN) return dropFrame(drop::Truncated);
  const uint8_t verIhl = p[IP_VER_IHL];
  const uint32_t ihl = uint32_t(verIhl & 0x0f) << 2;
  if ((verIhl >> 4) != 4 || ihl < IP_MIN_HLEN) return dropFrame(drop::BadIpHeader);
  const uint32_t totalLen = be16(p + IP_TOTAL_LEN);
  if (totalLen < ihl) return dropFrame(drop::BadIpHeader);
  const uint32_t ipEnd = ETH_HLEN + totalLen;
  if (ipEnd > len) return dropFrame(drop::Truncated);
  if (be16(p + IP_FRAG) & (IP_MF | IP_OFFSET_MASK)) return dropFrame(drop::Fragment);
  const uint8_t proto = p[IP_PROTO];
  const uint32_t l4 = ETH_HLEN + ihl;
  uint8_t tcpFlags;
  uint32_t l4Hlen;
  if (proto == IPPROTO_TCP_) {
    if (l4 + TCP_MIN_HLEN > ipEnd) return dropFrame(drop::Truncated);
    const uint32_t dataOff = uint32_t(p[l4 + 12] >> 4) << 2;
    if (dataOff < TCP_MIN_HLEN) return dropFrame(drop::BadIpHeader);
    if (l4 + dataOff > ipEnd) return dropFrame(drop::Truncated);
    tcpFlags = p[l4 + TCP_FLAGS];
    l4Hlen = dataOff;
  } else if (proto == IPPROTO_UDP_) {
    if (l4 + UDP_HLEN > ipEnd) return dropFrame(drop::Truncated);
    tcpFlags = 0;
    l4Hlen = UDP_HLEN;
  } else {
    return dropFrame(drop::Unsupported);
  }
  const uint32_t gsoSize = u16h(vh + kVnetGsoSize);
  // Too big for the egress with DF set (a super-frame: its segments): the TypeScript path
  // answers "fragmentation needed" (too_big), as it decides; it counts the frame itself.
  const uint32_t mtu = t.egressMtu[0];
  if (mtu != 0 && (be16(p + IP_FRAG) & kIpDf) &&
      (gsoType == kGsoNone ? totalLen > mtu : std::min(totalLen, ihl + l4Hlen + gsoSize) > mtu)) {
    c[ctr::RxFrames] -= 1;
    c[ctr::RxBytes] -= len;
    if (gsoType != kGsoNone) c[ctr::SuperFrames] -= 1;
    return handOff(p, len, vh, kDrop);
  }
  // A super-frame leaves whole with its header, for the kernel or the NIC to segment: only TCP
  // (TSO/GRO) and UDP (USO) ones of a plausible size, and only through a vnet socket.
  if (gsoType != kGsoNone) {
    const uint8_t g = gsoType & static_cast<uint8_t>(~kGsoEcn);
    const bool ok = txVnet && gsoSize != 0 &&
                    ((g == kGsoTcpV4 && proto == IPPROTO_TCP_) ||
                     // A UDP one without NEEDS_CSUM (fraglist GRO's) the kernel refuses to send (EINVAL).
                     (g == kGsoUdpL4 && gsoType == g && proto == IPPROTO_UDP_ && (vh[kVnetFlags] & kVnetNeedsCsum)));
    if (!ok) return dropFrame(drop::GsoUnsupported);
  }
  // The header's checksum offsets, which the kernel acts on: inside the packet after the IP
  // header, and a super-frame's at its TCP/UDP checksum (segment.ts validate(): the same rules).
  if (vh[kVnetFlags] & kVnetNeedsCsum) {
    const uint32_t start = u16h(vh + kVnetCsumStart);
    const uint32_t offset = u16h(vh + kVnetCsumOffset);
    if (start < l4 || start + offset + 2 > ipEnd) return dropFrame(drop::GsoUnsupported);
    if (gsoType != kGsoNone && (start != l4 || offset != (proto == IPPROTO_TCP_ ? 16u : 6u)))
      return dropFrame(drop::GsoUnsupported);
  }
  const uint32_t srcAddr = be32(p + IP_SRC);
  const uint32_t dstAddr = be32(p + IP_DST);
  const uint32_t srcPort = be16(p + l4 + L4_SRC_PORT);
  const uint32_t dstPort = be16(p + l4 + L4_DST_PORT);

  if (std::memcmp(p + ETH_DST, t.macs, 6) != 0) return dropFrame(drop::NotOurMac);

  // ---- service lookup (ServiceTable.lookup: linear scan) ----
  const uint32_t key = (dstPort << 8) | proto;
  int32_t count = t.svcMeta[0];
  if (count < 0) count = 0;
  if (static_cast<uint32_t>(count) > t.svcSlots) count = static_cast<int32_t>(t.svcSlots);
  int32_t svc = -1;
  int32_t tableSlot = -1;
  for (int32_t i = 0; i < count; i++) {
    if (t.svcVip[i] == dstAddr && t.svcPortProto[i] == key) {
      svc = t.svcMeta[1 + i];
      tableSlot = i;
      break;
    }
  }
  if (svc < 0) return dropFrame(drop::Unsupported);

  // ---- connection lookup; a miss may open a connection (Forwarder.schedule) ----
  const uint32_t connPort = (static_cast<uint32_t>(svc) << 16) | srcPort;
  uint32_t emptySlot = kMiss;
  int32_t slot = find(srcAddr, connPort, &emptySlot);
  bool upcall = false;
  bool reuse = false;
  const uint8_t svcFlags = static_cast<uint32_t>(svc) < t.svcFlagsCount ? t.svcFlags[svc] : 0;
  if (slot < 0) {
    // Only a SYN opens a connection, or under on_miss: hash a segment with ACK and neither SYN
    // nor RST (TypeScript schedules it by the hash: Forwarder.schedule).
    if (proto == IPPROTO_TCP_ && !opensOnMiss(svcFlags, tcpFlags)) return dropFrame(drop::NoConnection);
    upcall = true;
    // The upcall's insert lands where the probe stopped: fetch that slot's lines of the other
    // arrays now, all at once, instead of one cache miss after another in JavaScript (a large
    // table is cold; this was a third of an upcall's time).
    if (emptySlot != kMiss) {
      __builtin_prefetch(t.keyAddr + emptySlot, 1);
      __builtin_prefetch(t.keyPort + emptySlot, 1);
      __builtin_prefetch(t.state + emptySlot, 1);
      __builtin_prefetch(t.flags + emptySlot, 1);
      __builtin_prefetch(t.expires + emptySlot, 1);
    }
  } else {
    // A new connection on the port of a finished one (conn_reuse_mode): TypeScript expires the
    // entry and schedules the SYN (Forwarder.reuse), checked before the down server as there.
    const uint8_t mode = svcFlags & SVC_F_REUSE_MASK;
    reuse = proto == IPPROTO_TCP_ && (tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN &&
            reuseReschedules(mode, t.state[slot]);
    // The flow's real server failed its health check (on_down reschedule | drop): TypeScript
    // decides (Forwarder.downFlow). Out of range reads as undefined there, which is not 0.
    const uint32_t d = static_cast<uint32_t>(t.dest[slot]);
    upcall = reuse || d >= t.nDests || t.downAction[d] != 0;
  }
  if (upcall) {
    uint32_t args[kArgCount];
    args[kArgService] = static_cast<uint32_t>(svc);
    args[kArgTableSlot] = static_cast<uint32_t>(tableSlot);
    args[kArgSrcAddr] = srcAddr;
    args[kArgSrcPort] = srcPort;
    args[kArgProto] = proto;
    args[kArgFlags] = tcpFlags;
    args[kArgDstAddr] = dstAddr;
    args[kArgDstPort] = dstPort;
    args[kArgConnSlot] = slot < 0 ? kMiss : static_cast<uint32_t>(slot);
    args[kArgReuse] = reuse ? 1 : 0;
    stats.upcalls += 1;
    int32_t r;
    const uint64_t t0 = monotonicNs();
    const bool ok = host->schedule(args, &r);
    stats.upcallNs += double(monotonicNs() - t0);
    if (!ok) return -1;
    if (r < 0) return dropFrame(~r);
    // A slot of the table; anything else is a bug on the JS side.
    if (static_cast<uint32_t>(r) > t.connMask) return dropFrame(drop::TableFull);
    slot = r;
  }
  track(static_cast<uint32_t>(slot), proto, tcpFlags);

  // ---- rewrite (Direct Routing: MACs only) ----
  const int32_t dest = t.dest[slot];
  const bool inRange = static_cast<uint32_t>(dest) < t.nDests;
  if (inRange && t.macKnown[dest] == 0) return dropFrame(drop::NoMac);
  if (inRange)
    std::memcpy(p + ETH_DST, t.mac + size_t(dest) * 6, 6);
  else
    std::memset(p + ETH_DST, 0, 6);  // what TypeScript writes from undefined
  std::memcpy(p + ETH_SRC, t.macs + 6, 6);
  TxEntry& e = queue[queued++];
  std::memcpy(e.vnet, vh, kVnetLen);
  // A partial checksum (veth/tap with tx offload): with a header, the kernel completes it when
  // the frame leaves (NEEDS_CSUM, csum_start/offset, passed on as they came); without one (or
  // without a vnet socket), it is completed here.
  const bool partial = vnet != nullptr ? (vh[kVnetFlags] & kVnetNeedsCsum) != 0 : (status & kStatusCsumNotReady) != 0;
  if (partial && (vnet == nullptr || !txVnet)) {
    completeL4Checksum(p, l4, ipEnd, proto);
    e.vnet[kVnetFlags] &= static_cast<uint8_t>(~kVnetNeedsCsum);
    stats.csumFixed += 1;
  }
  e.data = p;
  e.len = len;
  e.dest = inRange ? dest : -1;
  e.svc = svc;
  return kForward;
}

void FastPath::flush(Sink& sink) {
  const uint32_t n = queued;
  if (n == 0) return;
  queued = 0;
  stats.flushes += 1;
  std::memset(ok, 0, n);
  const uint64_t t0 = monotonicNs();
  sink.send(queue, n, ok);
  stats.sendNs += double(monotonicNs() - t0);
  double* c = t.counters;
  for (uint32_t i = 0; i < n; i++) {
    const TxEntry& e = queue[i];
    if (!ok[i]) {
      t.drops[drop::SendFailed] += 1;
      stats.sendFailed += 1;
      continue;
    }
    if (e.dest >= 0) {
      t.destPackets[e.dest] += 1;
      t.destBytes[e.dest] += e.len;
    }
    if (static_cast<uint32_t>(e.svc) < t.svcStatsCount) {
      t.svcStats[2 * size_t(e.svc)] += 1;
      t.svcStats[2 * size_t(e.svc) + 1] += e.len;
    }
    c[ctr::TxFrames] += 1;
    c[ctr::TxBytes] += e.len;
  }
}

}  // namespace lbd
