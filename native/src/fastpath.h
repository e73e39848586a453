// The per-frame fast path: parse → service lookup → connection lookup → (upcall on a miss that
// may open a connection) → track → rewrite → queue for a batched send. It works on the very
// typed arrays the TypeScript Forwarder owns (pointers into their backing stores) and makes the
// same decision as Forwarder.process() for every input. No allocation, no locks, no N-API here:
// the JavaScript side is reached through the Host interface, the wire through a Sink.
#pragma once
#include <cstddef>
#include <cstdint>

#include "contract.h"

namespace lbd {

/** Bit of the per-frame status word: the L4 checksum is partial (TP_STATUS_CSUMNOTREADY). */
constexpr uint32_t kStatusCsumNotReady = 1u << 3;
/** Bit of the per-frame status word: the kernel stripped a VLAN tag (TP_STATUS_VLAN_VALID). */
constexpr uint32_t kStatusVlan = 1u << 4;

/**
 * The virtio-net header (struct virtio_net_hdr, PACKET_VNET_HDR) a super-frame arrives and
 * leaves with, in host byte order (the kernel's vio_le() on the little-endian hosts lbd runs on).
 */
constexpr uint32_t kVnetLen = 10;
constexpr uint32_t kVnetFlags = 0;       // u8: NEEDS_CSUM (csum_start/offset valid), DATA_VALID
constexpr uint32_t kVnetGsoType = 1;     // u8: NONE, TCPV4, UDP, TCPV6, UDP_L4; | ECN
constexpr uint32_t kVnetHdrLen = 2;      // u16
constexpr uint32_t kVnetGsoSize = 4;     // u16: payload bytes per segment
constexpr uint32_t kVnetCsumStart = 6;   // u16: from the frame's first byte
constexpr uint32_t kVnetCsumOffset = 8;  // u16: from csum_start
constexpr uint8_t kVnetNeedsCsum = 1;
constexpr uint8_t kGsoNone = 0;
constexpr uint8_t kGsoTcpV4 = 1;
constexpr uint8_t kGsoUdpL4 = 5;
constexpr uint8_t kGsoEcn = 0x80;
/** The largest frame: an IPv4 packet of 65535 bytes, its Ethernet header, room for a VLAN tag. */
constexpr uint32_t kMaxFrame = 65536 + 64;

/** tcpNext[] entries: nextTcpState() gave `undefined` (states no TCP entry can be in). */
constexpr uint16_t kUndefinedState = 0xffff;
constexpr uint32_t kTcpNextStates = 256;
constexpr uint32_t kTcpNextFlags = 16;  // FIN, SYN, RST, ACK packed into 4 bits
/** timeouts[]: 0..12 per TCP state (tcpTimeouts' length), 13 = UDP. */
constexpr uint32_t kTcpTimeoutCount = 13;
constexpr uint32_t kUdpTimeoutIndex = 13;
constexpr uint32_t kTimeoutsLen = 14;
/** The upcall's argument array (Uint32Array shared with JS). */
enum UpcallArg : uint32_t {
  kArgService = 0,  // the service's index (VirtualService.index)
  kArgTableSlot,    // the ServiceTable slot the lookup matched (slots[i] is the VirtualService)
  kArgSrcAddr,
  kArgSrcPort,
  kArgProto,
  kArgFlags,
  kArgDstAddr,
  kArgDstPort,
  kArgConnSlot,  // kMiss: a table miss (schedule); else the hit whose real server is down
  kArgReuse,     // 1: the hit is a SYN that conn_reuse_mode reschedules (Forwarder.rescheduleReuse)
  kArgCount
};
constexpr uint32_t kMiss = 0xffffffffu;

/** Raw views of the shared typed arrays. Lengths were checked when they were attached. */
struct Tables {
  // Connection table (ConnTable): slots = connMask + 1, a power of two.
  uint32_t* keyAddr = nullptr;
  uint32_t* keyPort = nullptr;
  int32_t* dest = nullptr;
  uint8_t* state = nullptr;
  uint8_t* flags = nullptr;
  uint32_t* expires = nullptr;
  uint32_t connMask = 0;
  // Real servers (DestTable), nDests entries each (mac: 6 bytes per entry).
  uint8_t* mac = nullptr;
  uint8_t* macKnown = nullptr;
  int32_t* active = nullptr;
  int32_t* inactive = nullptr;
  double* destPackets = nullptr;
  double* destBytes = nullptr;
  uint8_t* downAction = nullptr;  // DOWN_KEEP (0) or what to do with flows of a down server
  uint32_t nDests = 0;
  // Services (ServiceTable): vip/portProto per table slot; svcMeta[0] = count, svcMeta[1 + i] =
  // the service index of table slot i; svcStats[2 * index] packets, [2 * index + 1] bytes.
  uint32_t* svcVip = nullptr;
  uint32_t* svcPortProto = nullptr;
  uint32_t svcSlots = 0;
  int32_t* svcMeta = nullptr;
  double* svcStats = nullptr;
  uint32_t svcStatsCount = 0;
  uint8_t* svcFlags = nullptr;  // SVC_F_* per service index: conn_reuse_mode, on_miss
  uint32_t svcFlagsCount = 0;
  // Counters.
  double* counters = nullptr;
  double* drops = nullptr;
  // Parameters mirrored from the Forwarder.
  double* clock = nullptr;        // Forwarder.now
  uint32_t* timeouts = nullptr;   // kTimeoutsLen
  uint8_t* macs = nullptr;        // captureMac[6], egressMac[6]
  uint32_t* egressMtu = nullptr;  // [0]: the egress interface's MTU (0: not set, no check)
  uint16_t* tcpNext = nullptr;    // [state * 16 + flagBits], from nextTcpState()
};

/** A forwarded frame waiting for the end of the batch. */
struct TxEntry {
  uint8_t* data;
  uint32_t len;
  int32_t dest;  // -1: out of the dest table's range (no per-server counting)
  int32_t svc;
  uint8_t vnet[kVnetLen];  // the header it leaves with (a vnet socket sends it): the one it came with
};

constexpr uint32_t kBatch = 256;

/** Where a batch goes: the egress socket, or memory for tests. ok[i] = 1 when entry i was sent. */
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void send(TxEntry* entries, uint32_t n, uint8_t* ok) = 0;
};

/** The JavaScript side. Both return false when JavaScript threw (the batch is aborted). */
class Host {
 public:
  virtual ~Host() = default;
  /**
   * A table miss that may open a connection (args[kArgConnSlot] == kMiss), a SYN on a finished
   * entry that conn_reuse_mode reschedules (args[kArgReuse] == 1), or a hit on a flow whose real
   * server is down (downAction != 0): *result = the slot to use, or ~drop reason.
   */
  virtual bool schedule(const uint32_t* args, int32_t* result) = 0;
  /**
   * A frame for the TypeScript path (ARP, ICMP, a frame too big for the egress MTU):
   * Forwarder.process() counts and handles it. vnet: its virtio-net header (kVnetLen bytes,
   * zeros for an ordinary frame). *verdict: what Forwarder.process() returned, when it says.
   */
  virtual bool slowPath(const uint8_t* frame, uint32_t len, const uint8_t* vnet, int* verdict) = 0;
};

struct FastPathStats {
  double frames = 0;     // frames given to process()
  double upcalls = 0;    // schedule() calls into JavaScript
  double upcallNs = 0;   // time in those calls (CLOCK_MONOTONIC)
  double sendNs = 0;     // time in the sink's send (sendmmsg, with the kernel's delivery behind it)
  double slowPath = 0;   // frames handed to the TypeScript path
  double csumFixed = 0;  // partial checksums completed
  double flushes = 0;    // batches handed to the sink
  double sendFailed = 0;
};

class FastPath {
 public:
  Tables t;
  bool attached = false;
  Host* host = nullptr;
  TxEntry queue[kBatch];
  uint8_t ok[kBatch];
  uint32_t queued = 0;
  FastPathStats stats;
  /**
   * The sink sends each frame's virtio-net header (TxSocket::vnet()): super-frames can leave
   * whole, partial checksums are left to the kernel. Without it, a partial checksum is completed
   * here and a super-frame is dropped (gso_unsupported).
   */
  bool txVnet = true;

  /**
   * Handles one frame in place. vnet: the frame's virtio-net header (kVnetLen bytes), or null
   * for a ring without one: then status's kStatusCsumNotReady says the checksum is partial and
   * it is completed here. Returns its Verdict (kForward = queued: the caller must flush()
   * before the frame's memory is reused, and when queued == kBatch), or -1 when JavaScript
   * threw during an upcall (the exception is pending; the frame is not counted further).
   */
  int process(uint8_t* p, uint32_t len, uint32_t status, const uint8_t* vnet = nullptr);

  /** Sends the queued frames and counts them (sent: Tx and per-server/service; refused: drop). */
  void flush(Sink& sink);

 private:
  int dropFrame(int reason) {
    if (reason >= 0 && reason < drop::Count) t.drops[reason] += 1;
    return kDrop;
  }
  int handOff(const uint8_t* p, uint32_t len, const uint8_t* vnet, int verdict);
  /** The slot holding the key, or -1 with *empty = the empty slot the probe stopped at. */
  int32_t find(uint32_t addr, uint32_t port, uint32_t* empty) const;
  void track(uint32_t slot, uint8_t proto, uint8_t tcpFlags);
};

/** CLOCK_MONOTONIC in nanoseconds (vDSO: tens of ns; read per upcall and per batch, never per frame). */
uint64_t monotonicNs();

/** JavaScript's ToUint32 (what storing a number into a Uint32Array does). */
uint32_t toUint32Slow(double v);
inline uint32_t toUint32(double v) { return (v >= 0 && v < 4294967296.0) ? static_cast<uint32_t>(v) : toUint32Slow(v); }

/** Recomputes the TCP/UDP checksum of an IPv4 frame whose headers parse() validated. */
void completeL4Checksum(uint8_t* p, uint32_t l4, uint32_t ipEnd, uint8_t proto);

}  // namespace lbd
