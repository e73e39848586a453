// The fast path (native/src/fastpath.cc) under libFuzzer, with ASan and UBSan
// (scripts/build-fuzz.sh builds it, scripts/fuzz.mjs runs it: npm run fuzz). No Node here: the
// per-frame code is FastPath::process()/flush() on a Tables of raw pointers, with the JavaScript
// side behind the Host interface and the wire behind a Sink (fastpath.h), so this file plays the
// parts attach(), JsHost, processFrames() and the TypeScript Forwarder play in the addon:
//   - the shared state is one region laid out as state.ts lays it out (contract.ts stateLayout()
//     and the TCP transition table, generated from the TypeScript into fuzz_state.h), set up once:
//     two VIPs, a TCP and a UDP service on the first (the lab's web and echo), an on_miss: hash TCP
//     service on the second, three real servers (two MACs known, one learnt from an ARP reply);
//   - schedule() does what Forwarder.scheduleNew/rescheduleReuse/rescheduleDown do, simply: a new
//     flow goes to a real server of its service by its hash, inserted as ConnTable.insert() does
//     (an entry expired as Forwarder.expire() does: backward-shift deletion), or the upcall
//     fails as the input's configuration says (no_real_server, table_full, a JavaScript throw);
//   - slowPath() takes ARP, ICMP and too-big frames as JsHost does (copied whole into a scratch
//     buffer) and learns a real server's MAC from an ARP reply;
//   - the sink checks every frame it is given (bounds, the rewritten MACs) and may refuse some.
// After every frame and every input it checks what must hold: one count per frame (forwarded,
// dropped by one reason or handed over), the connection table findable, ActiveConn/InActConn
// equal to the entries, INACTIVE exactly when a TCP entry is not ESTABLISHED. A failed check
// aborts, which libFuzzer reports as a crash. Each input starts from the same state (the table
// emptied, counters zeroed), so that every crash replays from its input alone.
//
// Input: cfg0 cfg1, then records until the input ends:
//   ctl, len (u16 LE; more than what is left = the rest), [virtio-net header: 10 bytes if ctl bit 0],
//   frame (len bytes, each in an allocation of its own size so that ASan sees any read past it)
//   cfg0: bits 0-1 the upcalls' failure mode (0 none, 1 every 5th no_real_server, 2 every 3rd
//         table_full, 3 every 4th JavaScript throws), bit 2 the egress carries virtio-net
//         headers (txVnet), bit 3 an egress MTU (1500, or 576 with cfg1 bit 6), bits 4-5 real
//         server 1's downAction when it is down (0 keep, 1 reschedule, 2 drop, 3 other), bit 6 on_miss: hash
//         on the web service, bit 7 the sink refuses every other frame (send_failed)
//   cfg1: bits 0-1 the web service's conn_reuse_mode (3 = 2), bits 2-3 the clock's start (0,
//         1000, 2^32 - 6, 1e12), bit 4 real server 2 (MAC unknown until ARP) in the web
//         service's choices, bit 5 a table of 16 entries, bit 6 the small MTU, bit 7 a busy
//         table (384 entries of other flows: prefill())
//   ctl:  bit 0 a virtio-net header follows, bit 1 TP_STATUS_CSUMNOTREADY, bit 2 a stripped VLAN
//         tag, bits 3-4 the clock advances by 0, 1, 30 or 1000 s first, bit 5 then expired
//         entries are swept, bit 6 the batch is flushed first, bit 7 real server 1 goes down (or up)
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "fastpath.h"
#include "fuzz_state.h"

namespace {

using namespace lbd;

#define FUZZ_CHECK(cond)                                                                            \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      std::fprintf(stderr, "fastpath_fuzz: check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (0)

constexpr uint32_t ipv4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return (a << 24) | (b << 16) | (c << 8) | d; }

// ---- the configuration (the pcap fixtures' lab: test/unit/pcap-replay.test.ts) ----
const uint8_t kCaptureMac[6] = {0x02, 0, 0, 0, 0, 0x30};  // the balancer
const uint8_t kEgressMac[6] = {0x02, 0, 0, 0, 0, 0x31};
struct Dest {
  uint32_t addr;
  uint8_t mac[6];
  bool known;
};
const Dest kDests[] = {
    {ipv4(10, 0, 10, 40), {0x02, 0, 0, 0, 0, 0x40}, true},
    {ipv4(10, 0, 10, 111), {0x02, 0, 0, 0, 0x01, 0x11}, true},
    {ipv4(10, 0, 10, 51), {0}, false},  // its MAC is learnt from an ARP reply
};
constexpr uint32_t kDestCount = 3;
struct Service {
  uint32_t vip;
  uint32_t port;
  uint8_t proto;
  int32_t index;  // VirtualService.index (the connection key's high 16 bits)
  uint8_t dests[3];
  uint8_t nDests;
};
const Service kServices[] = {
    {ipv4(10, 0, 10, 100), 80, IPPROTO_TCP_, 0, {0, 1, 2}, 2},  // web (+ real server 2: cfg1 bit 4)
    {ipv4(10, 0, 10, 100), 5353, IPPROTO_UDP_, 1, {0, 1}, 2},   // echo
    {ipv4(10, 0, 10, 101), 443, IPPROTO_TCP_, 7, {1, 2}, 2},    // on_miss: hash, conn_reuse_mode 1
};
constexpr uint32_t kServiceCount = 3;

// ---- the region and its views ----
uint8_t* gRegion = nullptr;
Tables gT;
uint32_t* gRefs = nullptr;
uint8_t* gScratch = nullptr;  // JsHost's scratch: kMaxFrame bytes
uint8_t gSlowVnet[kVnetLen];
uint16_t gTcpNext[kTcpNextStates * kTcpNextFlags];
// The slots an entry was ever inserted into during this input (entries only move into slots
// that held one): what reset() clears and checkTable() looks at, not the whole table.
std::vector<uint32_t> gTouched;
std::vector<uint8_t> gIsTouched;

void* field(const char* name, char type, size_t minLen, size_t* len = nullptr) {
  for (const auto& f : lbd_fuzz_gen::kFields) {
    if (std::strcmp(f.name, name) != 0) continue;
    FUZZ_CHECK(f.type == type && f.length >= minLen);
    if (len != nullptr) *len = f.length;
    return gRegion + f.offset;
  }
  std::fprintf(stderr, "fastpath_fuzz: the region has no field %s\n", name);
  std::abort();
}

// What attach() does: every array by name, its element type and length checked.
void setUp() {
  gRegion = static_cast<uint8_t*>(std::aligned_alloc(64, (lbd_fuzz_gen::kRegionBytes + 63) / 64 * 64));
  FUZZ_CHECK(gRegion != nullptr);
  std::memset(gRegion, 0, lbd_fuzz_gen::kRegionBytes);
  size_t slots, dests, svcSlots, statsLen, flagsLen;
  gT.keyAddr = static_cast<uint32_t*>(field("keyAddr", 'u', 1, &slots));
  FUZZ_CHECK(slots == lbd_fuzz_gen::kConnSlots && (slots & (slots - 1)) == 0);
  gT.keyPort = static_cast<uint32_t*>(field("keyPort", 'u', slots));
  gT.dest = static_cast<int32_t*>(field("dest", 'i', slots));
  gT.state = static_cast<uint8_t*>(field("state", 'b', slots));
  gT.flags = static_cast<uint8_t*>(field("flags", 'b', slots));
  gT.expires = static_cast<uint32_t*>(field("expires", 'u', slots));
  gRefs = static_cast<uint32_t*>(field("refs", 'u', slots));
  gT.connMask = static_cast<uint32_t>(slots - 1);
  gT.macKnown = static_cast<uint8_t*>(field("macKnown", 'b', 1, &dests));
  gT.mac = static_cast<uint8_t*>(field("mac", 'b', dests * 6));
  gT.active = static_cast<int32_t*>(field("active", 'i', dests));
  gT.inactive = static_cast<int32_t*>(field("inactive", 'i', dests));
  gT.destPackets = static_cast<double*>(field("destPackets", 'd', dests));
  gT.destBytes = static_cast<double*>(field("destBytes", 'd', dests));
  gT.downAction = static_cast<uint8_t*>(field("downAction", 'b', dests));
  gT.nDests = static_cast<uint32_t>(dests);
  gT.svcVip = static_cast<uint32_t*>(field("svcVip", 'u', 1, &svcSlots));
  gT.svcPortProto = static_cast<uint32_t*>(field("svcPortProto", 'u', svcSlots));
  gT.svcMeta = static_cast<int32_t*>(field("svcMeta", 'i', svcSlots + 1));
  gT.svcStats = static_cast<double*>(field("svcStats", 'd', 2, &statsLen));
  gT.svcFlags = static_cast<uint8_t*>(field("svcFlags", 'b', 1, &flagsLen));
  gT.svcSlots = static_cast<uint32_t>(svcSlots);
  gT.svcStatsCount = static_cast<uint32_t>(statsLen / 2);
  gT.svcFlagsCount = static_cast<uint32_t>(flagsLen);
  gT.counters = static_cast<double*>(field("counters", 'd', ctr::Count));
  gT.drops = static_cast<double*>(field("drops", 'd', drop::Count));
  gT.clock = static_cast<double*>(field("clock", 'd', 1));
  gT.timeouts = static_cast<uint32_t*>(field("timeouts", 'u', kTimeoutsLen));
  gT.macs = static_cast<uint8_t*>(field("macs", 'b', 12));
  gT.egressMtu = static_cast<uint32_t*>(field("egressMtu", 'u', 1));
  static_assert(sizeof(lbd_fuzz_gen::kTcpNext) == sizeof(gTcpNext), "the transition table's size");
  std::memcpy(gTcpNext, lbd_fuzz_gen::kTcpNext, sizeof gTcpNext);
  gT.tcpNext = gTcpNext;
  static_assert(sizeof(lbd_fuzz_gen::kTimeouts) == kTimeoutsLen * sizeof(uint32_t), "the timeouts' length");
  std::memcpy(gT.timeouts, lbd_fuzz_gen::kTimeouts, sizeof lbd_fuzz_gen::kTimeouts);
  std::memcpy(gT.macs, kCaptureMac, 6);
  std::memcpy(gT.macs + 6, kEgressMac, 6);
  // The ServiceTable: a slot per service, svcMeta = [count, the index in each slot].
  FUZZ_CHECK(kServiceCount <= gT.svcSlots);
  gT.svcMeta[0] = kServiceCount;
  for (uint32_t i = 0; i < kServiceCount; i++) {
    gT.svcVip[i] = kServices[i].vip;
    gT.svcPortProto[i] = (kServices[i].port << 8) | kServices[i].proto;
    gT.svcMeta[1 + i] = kServices[i].index;
    FUZZ_CHECK(static_cast<uint32_t>(kServices[i].index) < gT.svcStatsCount);
  }
  gScratch = new uint8_t[kMaxFrame];
  for (uint32_t i = 0; i < slots; i++) gT.dest[i] = SLOT_EMPTY;  // ConnTable's constructor
  gIsTouched.assign(slots, 0);
  gTouched.reserve(slots);
}

// ---- the TypeScript side, simply: ConnTable and Forwarder's scheduling ----
struct Config {
  uint8_t failMode = 0;
  uint8_t downAction1 = 0;
  bool refuseOdd = false;
  bool dest2 = false;
  uint32_t capacity = lbd_fuzz_gen::kConnCapacity;
};
Config gCfg;
uint32_t gSize = 0;  // entries in the connection table
uint32_t gUpcalls = 0;
uint32_t gSlowCalls = 0;
bool gSlowCalled = false;
bool gThrew = false;
const uint8_t* gFrame = nullptr;  // the frame process() is looking at
uint32_t gFrameLen = 0;

int32_t findSlot(uint32_t addr, uint32_t port) {
  uint32_t i = flowHash(addr, port) & gT.connMask;
  for (uint32_t n = 0; n <= gT.connMask; n++) {
    if (gT.dest[i] == SLOT_EMPTY) return -1;
    if (gT.keyAddr[i] == addr && gT.keyPort[i] == port) return static_cast<int32_t>(i);
    i = (i + 1) & gT.connMask;
  }
  return -1;
}

void moveSlot(uint32_t from, uint32_t to) {
  gT.keyAddr[to] = gT.keyAddr[from];
  gT.keyPort[to] = gT.keyPort[from];
  gT.dest[to] = gT.dest[from];
  gT.state[to] = gT.state[from];
  gT.flags[to] = gT.flags[from];
  gT.expires[to] = gT.expires[from];
  gRefs[to] = gRefs[from];
}

// ConnTable.remove(): backward-shift deletion. True when an entry moved into `slot`.
bool removeSlot(uint32_t slot) {
  const uint32_t mask = gT.connMask;
  uint32_t gap = slot;
  bool movedIntoSlot = false;
  uint32_t j = slot;
  for (;;) {
    j = (j + 1) & mask;
    if (gT.dest[j] == SLOT_EMPTY) break;
    const uint32_t home = flowHash(gT.keyAddr[j], gT.keyPort[j]) & mask;
    if (((j - home) & mask) >= ((j - gap) & mask)) {
      moveSlot(j, gap);
      if (gap == slot) movedIntoSlot = true;
      gap = j;
    }
  }
  gT.dest[gap] = SLOT_EMPTY;
  gSize--;
  return movedIntoSlot;
}

// Forwarder.expire(): the entry's accounting released, then removed.
bool expireSlot(uint32_t slot) {
  const int32_t d = gT.dest[slot];
  FUZZ_CHECK(d >= 0 && static_cast<uint32_t>(d) < kDestCount);
  if (gT.flags[slot] & CONN_F_INACTIVE)
    gT.inactive[d]--;
  else
    gT.active[d]--;
  return removeSlot(slot);
}

// Forwarder.sweep() over the whole table.
void sweep() {
  const double now = gT.clock[0];
  double expired = 0;
  for (uint32_t i = 0; i <= gT.connMask;) {
    if (gT.dest[i] != SLOT_EMPTY && gT.expires[i] <= now) {
      expireSlot(i);
      expired++;
      if (gT.dest[i] != SLOT_EMPTY) continue;
    }
    i++;
  }
  gT.counters[ctr::ExpiredConns] += expired;
}

const Service& serviceOf(const uint32_t* a) {
  // native.ts: services.atSlot(args[1]) must be the service args[0] names.
  FUZZ_CHECK(a[kArgTableSlot] < kServiceCount);
  const Service& s = kServices[a[kArgTableSlot]];
  FUZZ_CHECK(static_cast<int32_t>(a[kArgService]) == s.index);
  FUZZ_CHECK(a[kArgDstAddr] == s.vip && a[kArgDstPort] == s.port && a[kArgProto] == s.proto);
  FUZZ_CHECK(a[kArgSrcPort] <= 0xffff && a[kArgFlags] <= 0xff);
  return s;
}

// The service's scheduler, simply: a real server by the flow's hash among those not down.
int32_t pick(const Service& s, uint32_t addr, uint32_t port) {
  uint32_t candidates[3];
  uint32_t n = 0;
  const uint32_t total = s.index == 0 && gCfg.dest2 ? 3 : s.nDests;
  for (uint32_t i = 0; i < total; i++)
    if (gT.downAction[s.dests[i]] == 0) candidates[n++] = s.dests[i];
  if (n == 0) return -1;
  return static_cast<int32_t>(candidates[flowHash(addr, port) % n]);
}

// ConnTable.insert() (the caller checked the key is absent and the table not full).
uint32_t insertEntry(uint32_t addr, uint32_t key, int32_t dest, uint8_t st, uint8_t flags, uint32_t expires) {
  uint32_t i = flowHash(addr, key) & gT.connMask;
  while (gT.dest[i] != SLOT_EMPTY) i = (i + 1) & gT.connMask;
  if (!gIsTouched[i]) {
    gIsTouched[i] = 1;
    gTouched.push_back(i);
  }
  gT.keyAddr[i] = addr;
  gT.keyPort[i] = key;
  gT.dest[i] = dest;
  gT.state[i] = st;
  gT.flags[i] = flags;
  gT.expires[i] = expires;
  gRefs[i] = 0;
  gSize++;
  return i;
}

// A busy table (cfg1 bit 7): 384 entries of other clients, some of 10.0.10.50 (the seeds' client)
// on ports 20000 and up, TCP ESTABLISHED or FIN_WAIT and UDP, a quarter expiring now, so that
// lookups probe past other keys and sweeps shift clusters back.
void prefill() {
  for (uint32_t k = 0; k < 384; k++) {
    const uint32_t addr = k % 3 == 0 ? ipv4(10, 0, 10, 50) : ipv4(10, 1, k >> 8, k & 255);
    const bool udp = k % 4 == 3;
    const uint32_t key = ((udp ? 1u : 0u) << 16) | (20000 + k);
    const int32_t d = static_cast<int32_t>(k % 2);
    const uint8_t st = udp ? state::Udp : k % 5 == 0 ? state::FinWait : state::Established;
    const uint8_t flags = st == state::Established ? 0 : CONN_F_INACTIVE;
    insertEntry(addr, key, d, st, flags, toUint32(gT.clock[0] + (k % 4 == 0 ? 0 : 500)));
    (flags ? gT.inactive : gT.active)[d]++;
  }
}

// Forwarder.schedule(): the new slot, or ~reason.
int32_t scheduleNew(const Service& s, const uint32_t* a) {
  const uint32_t flags = a[kArgFlags];
  const bool continuing = a[kArgProto] == IPPROTO_TCP_ && (flags & (TCP_SYN | TCP_ACK | TCP_RST)) != TCP_SYN;
  if (continuing && !opensOnMiss(gT.svcFlags[s.index], static_cast<uint8_t>(flags))) return ~drop::NoConnection;
  const uint32_t key = (static_cast<uint32_t>(s.index) << 16) | a[kArgSrcPort];
  FUZZ_CHECK(findSlot(a[kArgSrcAddr], key) < 0);  // only a miss is scheduled
  const int32_t d = pick(s, a[kArgSrcAddr], a[kArgSrcPort]);
  if (d < 0) return ~drop::NoRealServer;
  if (gSize >= gCfg.capacity) return ~drop::TableFull;
  const uint32_t i = insertEntry(a[kArgSrcAddr], key, d, a[kArgProto] == IPPROTO_TCP_ ? state::None : state::Udp,
                                 CONN_F_INACTIVE, toUint32(gT.clock[0] + 2));
  gT.inactive[d]++;
  gT.counters[ctr::NewConns] += 1;
  return static_cast<int32_t>(i);
}

// Forwarder.downFlow(): the flow of a down real server dropped or moved to another.
int32_t downFlow(const Service& s, const uint32_t* a, uint32_t slot) {
  const int32_t old = gT.dest[slot];
  if (gT.downAction[old] == 2) {
    expireSlot(slot);
    return ~drop::NoRealServer;
  }
  const int32_t d = pick(s, a[kArgSrcAddr], a[kArgSrcPort]);
  if (d < 0) return ~drop::NoRealServer;
  if (gT.flags[slot] & CONN_F_INACTIVE) {
    gT.inactive[old]--;
    gT.inactive[d]++;
  } else {
    gT.active[old]--;
    gT.active[d]++;
  }
  gT.dest[slot] = d;
  return static_cast<int32_t>(slot);
}

class FuzzHost : public Host {
 public:
  bool schedule(const uint32_t* a, int32_t* result) override {
    gUpcalls++;
    const Service& s = serviceOf(a);
    if (gCfg.failMode == 3 && gUpcalls % 4 == 0) {
      gThrew = true;
      return false;  // the callback threw
    }
    if (gCfg.failMode == 1 && gUpcalls % 5 == 0) {
      *result = ~drop::NoRealServer;
      return true;
    }
    if (gCfg.failMode == 2 && gUpcalls % 3 == 0) {
      *result = ~drop::TableFull;
      return true;
    }
    const uint32_t slot = a[kArgConnSlot];
    if (slot == kMiss) {
      FUZZ_CHECK(a[kArgReuse] == 0);
      *result = scheduleNew(s, a);
      return true;
    }
    // A hit: the entry must be the flow's.
    FUZZ_CHECK(slot <= gT.connMask && gT.dest[slot] != SLOT_EMPTY);
    FUZZ_CHECK(gT.keyAddr[slot] == a[kArgSrcAddr]);
    FUZZ_CHECK(gT.keyPort[slot] == ((static_cast<uint32_t>(s.index) << 16) | a[kArgSrcPort]));
    if (a[kArgReuse] == 1) {
      // Forwarder.reuse(): a SYN on a finished entry: expired, and the SYN scheduled afresh.
      FUZZ_CHECK((a[kArgFlags] & (TCP_SYN | TCP_ACK | TCP_RST)) == TCP_SYN);
      FUZZ_CHECK(reuseReschedules(gT.svcFlags[s.index] & SVC_F_REUSE_MASK, gT.state[slot]));
      expireSlot(slot);
      gT.counters[ctr::ExpiredConns] += 1;
      *result = scheduleNew(s, a);
      return true;
    }
    FUZZ_CHECK(a[kArgReuse] == 0 && gT.downAction[gT.dest[slot]] != 0);
    *result = downFlow(s, a, slot);
    return true;
  }

  bool slowPath(const uint8_t* frame, uint32_t len, const uint8_t* vnet, int* verdict) override {
    gSlowCalls++;
    gSlowCalled = true;
    FUZZ_CHECK(frame == gFrame && len == gFrameLen);
    // Only ARP, ICMP and (DF set, an egress MTU) too-big IPv4 frames come here.
    FUZZ_CHECK(len >= ETH_HLEN);
    const uint32_t type = (uint32_t(frame[ETH_TYPE]) << 8) | frame[ETH_TYPE + 1];
    const bool arp = type == ETHERTYPE_ARP;
    FUZZ_CHECK(arp || (type == ETHERTYPE_IPV4 && len >= ETH_HLEN + IP_MIN_HLEN));
    FUZZ_CHECK(arp || frame[IP_PROTO] == 1 || (gT.egressMtu[0] != 0 && (frame[IP_FRAG] & 0x40) != 0));
    // JsHost::slowPath: the frame whole into the scratch buffer (never cut), its header too.
    const uint32_t n = len <= kMaxFrame ? len : 0;
    std::memcpy(gScratch, frame, n);
    std::memcpy(gSlowVnet, vnet, kVnetLen);
    // An ARP reply from real server 2 (Forwarder.onArp): its MAC is learnt.
    if (arp && n >= ETH_HLEN + 28 && gScratch[ETH_HLEN + 7] == 2) {
      const uint8_t* sip = gScratch + ETH_HLEN + 14;
      const uint32_t sender = (uint32_t(sip[0]) << 24) | (uint32_t(sip[1]) << 16) | (uint32_t(sip[2]) << 8) | sip[3];
      if (sender == kDests[2].addr) {
        std::memcpy(gT.mac + 2 * 6, gScratch + ETH_HLEN + 8, 6);
        gT.macKnown[2] = 1;
      }
    }
    if (gCfg.failMode == 3 && gSlowCalls % 4 == 0) {
      gThrew = true;
      return false;
    }
    // Forwarder.process()'s verdict: ARP's; an ICMP error it forwarded itself, or a drop.
    if (arp)
      *verdict = kArp;
    else if (frame[IP_PROTO] == 1 && (gSlowCalls & 1))
      *verdict = kForward;
    return true;
  }
};

class FuzzSink : public Sink {
 public:
  double lastOk = 0;
  void send(TxEntry* entries, uint32_t n, uint8_t* ok) override {
    FUZZ_CHECK(n >= 1 && n <= kBatch);
    lastOk = 0;
    for (uint32_t i = 0; i < n; i++) {
      const TxEntry& e = entries[i];
      // A frame leaves whole: an IPv4 TCP/UDP frame within the largest frame.
      FUZZ_CHECK(e.len >= ETH_HLEN + IP_MIN_HLEN + UDP_HLEN && e.len <= kMaxFrame);
      FUZZ_CHECK(e.dest >= -1 && (e.dest == -1 || static_cast<uint32_t>(e.dest) < gT.nDests));
      // (Its destination MAC is checked when it is queued: an ARP reply later in the batch may
      // change the real server's MAC, which applies to later frames only, as in TypeScript.)
      FUZZ_CHECK(std::memcmp(e.data + ETH_SRC, kEgressMac, 6) == 0);
      FUZZ_CHECK(e.svc == 0 || e.svc == 1 || e.svc == 7);
      // A super-frame or a partial checksum leaves only with a header the kernel acts on.
      if (e.vnet[kVnetGsoType] != kGsoNone) FUZZ_CHECK(e.len > ETH_HLEN + IP_MIN_HLEN);
      // Every byte is read, as sendmmsg would.
      uint32_t sum = 0;
      for (uint32_t k = 0; k < e.len; k++) sum += e.data[k];
      for (uint32_t k = 0; k < kVnetLen; k++) sum += e.vnet[k];
      asm volatile("" : : "r"(sum));
      ok[i] = gCfg.refuseOdd && (i & 1) ? 0 : 1;
      lastOk += ok[i];
    }
  }
};

FastPath* gFp = nullptr;
FuzzHost gHost;
bool gTrace = false;  // FASTPATH_FUZZ_TRACE=1: each frame's verdict and each input's counts on stderr
FuzzSink gSink;

double dropSum() {
  double s = 0;
  for (int i = 0; i < drop::Count; i++) s += gT.drops[i];
  return s;
}

void flush() {
  const double tx = gT.counters[ctr::TxFrames];
  const double failed = gT.drops[drop::SendFailed];
  const uint32_t n = gFp->queued;
  gFp->flush(gSink);
  FUZZ_CHECK(gFp->queued == 0);
  if (n == 0) return;
  FUZZ_CHECK(gT.counters[ctr::TxFrames] == tx + gSink.lastOk);
  FUZZ_CHECK(gT.drops[drop::SendFailed] == failed + (n - gSink.lastOk));
}

// What must hold of the table between frames.
void checkTable() {
  int32_t active[kDestCount] = {0}, inactive[kDestCount] = {0};
  uint32_t size = 0;
  for (const uint32_t i : gTouched) {
    const int32_t d = gT.dest[i];
    if (d == SLOT_EMPTY) continue;
    size++;
    FUZZ_CHECK(d >= 0 && static_cast<uint32_t>(d) < kDestCount);
    FUZZ_CHECK(findSlot(gT.keyAddr[i], gT.keyPort[i]) == static_cast<int32_t>(i));
    const uint32_t svc = gT.keyPort[i] >> 16;
    const bool inactiveFlag = (gT.flags[i] & CONN_F_INACTIVE) != 0;
    if (svc == 1) {
      FUZZ_CHECK(gT.state[i] == state::Udp && inactiveFlag);
    } else {
      FUZZ_CHECK(svc == 0 || svc == 7);
      FUZZ_CHECK(gT.state[i] <= state::SynAck);
      FUZZ_CHECK(inactiveFlag == (gT.state[i] != state::Established));
    }
    (inactiveFlag ? inactive : active)[d]++;
  }
  FUZZ_CHECK(size == gSize);
  for (uint32_t d = 0; d < kDestCount; d++) FUZZ_CHECK(gT.active[d] == active[d] && gT.inactive[d] == inactive[d]);
}

// Every input starts from the same state.
void reset(uint8_t cfg0, uint8_t cfg1) {
  for (const uint32_t i : gTouched) {
    gT.dest[i] = SLOT_EMPTY;
    gT.keyAddr[i] = gT.keyPort[i] = gT.expires[i] = gRefs[i] = 0;
    gT.state[i] = gT.flags[i] = 0;
    gIsTouched[i] = 0;
  }
  gTouched.clear();
  gSize = 0;
  for (uint32_t d = 0; d < kDestCount; d++) {
    std::memcpy(gT.mac + d * 6, kDests[d].mac, 6);
    gT.macKnown[d] = kDests[d].known ? 1 : 0;
    gT.active[d] = gT.inactive[d] = 0;
    gT.destPackets[d] = gT.destBytes[d] = 0;
    gT.downAction[d] = 0;
  }
  std::memset(gT.counters, 0, ctr::Count * sizeof(double));
  std::memset(gT.drops, 0, drop::Count * sizeof(double));
  for (const Service& s : kServices) {
    gT.svcStats[2 * size_t(s.index)] = gT.svcStats[2 * size_t(s.index) + 1] = 0;
    gT.svcFlags[s.index] = 0;
  }
  gCfg = Config();
  gCfg.failMode = cfg0 & 3;
  gFp->txVnet = (cfg0 & 4) != 0;
  gT.egressMtu[0] = (cfg0 & 8) ? ((cfg1 & 0x40) ? 576 : 1500) : 0;
  gCfg.downAction1 = (cfg0 >> 4) & 3;  // real server 1 starts up: ctl bit 7 takes it down
  uint8_t reuse = cfg1 & 3;
  if (reuse == 3) reuse = 2;
  gT.svcFlags[0] = static_cast<uint8_t>(reuse | ((cfg0 & 0x40) ? SVC_F_ON_MISS_HASH : 0));
  gT.svcFlags[1] = 2;
  gT.svcFlags[7] = SVC_F_ON_MISS_HASH | 1;
  gCfg.refuseOdd = (cfg0 & 0x80) != 0;
  static const double kClocks[4] = {0, 1000, 4294967290.0, 1e12};
  gT.clock[0] = kClocks[(cfg1 >> 2) & 3];
  gCfg.dest2 = (cfg1 & 0x10) != 0;
  gCfg.capacity = (cfg1 & 0x20) ? 16 : lbd_fuzz_gen::kConnCapacity;
  if (cfg1 & 0x80) {
    gCfg.capacity = lbd_fuzz_gen::kConnCapacity;
    prefill();
  }
  gFp->queued = 0;
  gFp->stats = FastPathStats();
  gUpcalls = gSlowCalls = 0;
  gThrew = false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setUp();
  gFp = new FastPath();
  gFp->t = gT;
  gFp->host = &gHost;
  gFp->attached = true;
  gTrace = std::getenv("FASTPATH_FUZZ_TRACE") != nullptr;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  reset(data[0], data[1]);
  size_t at = 2;
  // Each frame in an allocation of its own size, alive until its batch has been sent.
  std::vector<std::unique_ptr<uint8_t[]>> held;
  static const double kAdvance[4] = {0, 1, 30, 1000};
  while (at + 3 <= size) {
    const uint8_t ctl = data[at];
    uint32_t len = data[at + 1] | (uint32_t(data[at + 2]) << 8);
    at += 3;
    std::unique_ptr<uint8_t[]> vnet;
    if (ctl & 1) {
      vnet.reset(new uint8_t[kVnetLen]());
      const size_t n = std::min<size_t>(kVnetLen, size - at);
      std::memcpy(vnet.get(), data + at, n);
      at += n;
    }
    if (len > size - at) len = static_cast<uint32_t>(size - at);
    std::unique_ptr<uint8_t[]> frame(new uint8_t[len]);
    std::memcpy(frame.get(), data + at, len);
    at += len;

    if (ctl & 0x40) flush();
    gT.clock[0] += kAdvance[(ctl >> 3) & 3];
    if (ctl & 0x20) sweep();
    // Real server 1 fails its health check (on_down: cfg0 bits 4-5, keep = 0) or passes again.
    if (ctl & 0x80) gT.downAction[1] = gT.downAction[1] != 0 ? 0 : gCfg.downAction1;
    const uint32_t status = ((ctl & 2) ? kStatusCsumNotReady : 0) | ((ctl & 4) ? kStatusVlan : 0);

    const double drops = dropSum();
    const double rx = gT.counters[ctr::RxFrames];
    const uint32_t queued = gFp->queued;
    gSlowCalled = false;
    gThrew = false;
    gFrame = frame.get();
    gFrameLen = len;
    const int r = gFp->process(frame.get(), len, status, vnet.get());
    // One count per frame: forwarded (queued), dropped under one reason, or handed over (counted there).
    if (r < 0) {
      FUZZ_CHECK(r == -1 && gThrew && gFp->queued == queued);
    } else if (gSlowCalled) {
      FUZZ_CHECK(r == kDrop || r == kArp || r == kForward);
      FUZZ_CHECK(dropSum() == drops && gT.counters[ctr::RxFrames] == rx && gFp->queued == queued);
    } else if (r == kForward) {
      FUZZ_CHECK(gFp->queued == queued + 1);
      const TxEntry& e = gFp->queue[gFp->queued - 1];
      FUZZ_CHECK(e.data == frame.get() && e.len == len);
      // Rewritten: to the real server's MAC (zeros for an index beyond the table, as TypeScript
      // writes undefined), from the egress interface's.
      static const uint8_t kZeroMac[6] = {0};
      if (e.dest >= 0) FUZZ_CHECK(gT.macKnown[e.dest] != 0);
      FUZZ_CHECK(std::memcmp(e.data + ETH_DST, e.dest >= 0 ? gT.mac + size_t(e.dest) * 6 : kZeroMac, 6) == 0);
      FUZZ_CHECK(std::memcmp(e.data + ETH_SRC, kEgressMac, 6) == 0);
      FUZZ_CHECK(dropSum() == drops && gT.counters[ctr::RxFrames] == rx + 1);
    } else {
      FUZZ_CHECK(r == kDrop && dropSum() == drops + 1 && gFp->queued == queued);
      FUZZ_CHECK(gT.counters[ctr::RxFrames] == rx + 1);
    }
    if (gTrace) std::fprintf(stderr, "frame %u bytes: verdict %d%s\n", len, r, gSlowCalled ? " (slow path)" : "");
    held.push_back(std::move(frame));
    if (vnet) held.push_back(std::move(vnet));
    // processFrames(): a throw ends the call, after the frames queued so far are sent.
    if (r < 0) break;
    if (gFp->queued == kBatch) flush();
  }
  flush();
  checkTable();
  if (gTrace) {
    std::fprintf(stderr, "rx %.0f tx %.0f new %.0f expired %.0f upcalls %u slow %u entries %u; drops",
                 gT.counters[ctr::RxFrames], gT.counters[ctr::TxFrames], gT.counters[ctr::NewConns],
                 gT.counters[ctr::ExpiredConns], gUpcalls, gSlowCalls, gSize);
    for (int i = 0; i < drop::Count; i++) std::fprintf(stderr, " %.0f", gT.drops[i]);
    std::fprintf(stderr, "\n");
  }
  return 0;
}
