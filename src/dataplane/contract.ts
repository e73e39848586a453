/**
 * The contract of the data plane: frame offsets, verdicts, drop reasons, counter indices and
 * the connection-table entry layout. The TypeScript data plane is the reference
 * implementation; the native addon (native/) mirrors every number in this file and must
 * make the same decision on the same input. Change a number here, change it there.
 */

// ---- Frame layout (Ethernet II, IPv4, TCP/UDP) -------------------------------------------
export const ETH_DST = 0;
export const ETH_SRC = 6;
export const ETH_TYPE = 12;
export const ETH_HLEN = 14;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;

export const IP_VER_IHL = ETH_HLEN + 0;
export const IP_TOTAL_LEN = ETH_HLEN + 2;
export const IP_FRAG = ETH_HLEN + 6; // flags (3 bits) + fragment offset (13 bits)
export const IP_PROTO = ETH_HLEN + 9;
export const IP_SRC = ETH_HLEN + 12;
export const IP_DST = ETH_HLEN + 16;
export const IP_MIN_HLEN = 20;
export const IP_MF = 0x2000;
export const IP_OFFSET_MASK = 0x1fff;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

// Offsets inside the L4 header (add the L4 offset, which depends on the IP header length).
export const L4_SRC_PORT = 0;
export const L4_DST_PORT = 2;
export const TCP_FLAGS = 13;
export const TCP_MIN_HLEN = 20;
export const UDP_HLEN = 8;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_ACK = 0x10;

// ---- Verdicts -----------------------------------------------------------------------------
export const enum Verdict {
  /** Rewritten in place and handed to the egress interface. */
  Forward = 0,
  /** Counted under a drop reason and discarded. */
  Drop = 1,
  /** An ARP frame: the control plane answers it (VIP ownership, real-server MACs). */
  Arp = 2,
}

// ---- Drop reasons (index into the drop counter array) -------------------------------------
export const enum Drop {
  Truncated = 0, // shorter than its headers claim
  NotIpv4 = 1, // another ethertype (IPv6, VLAN-tagged, LLDP, …)
  BadIpHeader = 2, // version != 4, IHL < 5, total length inconsistent
  Fragment = 3, // IPv4 fragments carry no (or no trustworthy) port numbers
  Unsupported = 4, // another IP protocol, or not addressed to a configured VIP:port
  NotOurMac = 5, // frame addressed to another MAC (a second handle or a flooding bridge)
  NoConnection = 6, // a TCP segment without SYN and without a connection entry (sloppy_tcp=0)
  NoRealServer = 7, // the scheduler found no available real server
  TableFull = 8, // the connection table is at capacity
  NoMac = 9, // the chosen real server's MAC is not resolved yet
  SendFailed = 10, // the egress interface refused the frame
  TooBig = 11, // DF set (or a super-frame's segments) larger than the egress MTU
  IcmpUnknownFlow = 12, // an ICMP error to a VIP quoting a flow lbd has no entry for
  GsoUnsupported = 13, // a super-frame (or partial checksum) lbd can neither pass on whole nor segment
}
export const DROP_REASONS = [
  'truncated',
  'not_ipv4',
  'bad_ip_header',
  'fragment',
  'unsupported',
  'not_our_mac',
  'no_connection',
  'no_real_server',
  'table_full',
  'no_mac',
  'send_failed',
  /** IPv4 with DF set (or a super-frame whose segments would be) larger than the egress MTU: the client gets ICMP "fragmentation needed" from the VIP. */
  'too_big',
  /** An ICMP error to a VIP quoting a flow lbd has no entry for. */
  'icmp_unknown_flow',
  /** A super-frame (GSO/GRO) of a kind lbd can neither pass on whole nor segment. */
  'gso_unsupported',
] as const;

// ---- Global counters (index into the global counter array) --------------------------------
export const enum Counter {
  RxFrames = 0,
  RxBytes = 1,
  TxFrames = 2,
  TxBytes = 3,
  ArpFrames = 4,
  NewConns = 5,
  ExpiredConns = 6,
  /** ICMP errors (about a reply of a flow) forwarded to the flow's real server. */
  IcmpForwarded = 7,
  /** ICMP "fragmentation needed" sent to clients (too_big). */
  IcmpTooBigSent = 8,
  /** Super-frames (a GSO/GRO frame carrying several segments) received. */
  SuperFrames = 9,
  /** Segments made in software from super-frames (where the header could not be passed on). */
  SoftwareSegments = 10,
}
export const COUNTER_COUNT = 11;

// ---- Connection states: IPVS's numbering (IP_VS_TCP_S_*), plus UDP and templates ----------
export const enum ConnState {
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
  /** A persistence template: client (network) → real server, like IPVS's templates. */
  Template = 12,
}
export const CONN_STATE_NAMES = [
  'NONE',
  'ESTABLISHED',
  'SYN_SENT',
  'SYN_RECV',
  'FIN_WAIT',
  'TIME_WAIT',
  'CLOSE',
  'CLOSE_WAIT',
  'LAST_ACK',
  'LISTEN',
  'SYNACK',
  'UDP',
  'TEMPLATE',
] as const;

/**
 * Connection-table entry layout: parallel typed arrays indexed by slot, open addressing with
 * linear probing over a power-of-two number of slots.
 *   keyAddr[slot]   client IPv4 address (u32)
 *   keyPort[slot]   (service index << 16) | client port   (u32); client port 0 for templates
 *   dest[slot]      global real-server index, or SLOT_EMPTY
 *   state[slot]     ConnState
 *   flags[slot]     CONN_F_* bits
 *   expires[slot]   coarse clock second at which the entry expires (u32)
 */
export const SLOT_EMPTY = -1;
export const CONN_F_INACTIVE = 1; // counted in the real server's InActConn, not ActiveConn
export const CONN_F_PERSIST = 2; // holds a reference on its persistence template (TypeScript only)
export const CONN_FLAGS_ALL = CONN_F_INACTIVE | CONN_F_PERSIST;

/** destHealth[] values: a real server's health verdict as the region keeps it. */
export const DEST_HEALTH_UNCHECKED = 0;
export const DEST_HEALTH_UP = 1;
export const DEST_HEALTH_DOWN = 2;

/** The slot hash both implementations use. Integer-only so C computes the same bits. */
export function flowHash(addr: number, port: number): number {
  let h = Math.imul(addr ^ Math.imul(port, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

// ---- The shared state: one region holding every array both paths read or write ------------
/**
 * The layout of the region (state.ts), bumped whenever a field is added, removed, resized or
 * reordered, so that a region kept from an earlier run (a memory-mapped state file) is never read
 * with another layout.
 */
export const STATE_LAYOUT_VERSION = 4;
/** The most real servers lbd tracks over its lifetime (indices are never reused while flows may point at them). */
export const MAX_DESTS = 4096;
/** The most virtual services at once; the VIP lookup is a linear scan, so keep this small. */
export const MAX_SERVICES = 256;
/** Per-service counters are indexed by VirtualService.index, which is 16 bits in a connection key. */
export const SERVICE_INDEXES = 1 << 16;
/** timeouts[]: [0..12] TCP by ConnState (tcpTimeouts), [13] UDP. */
export const TIMEOUTS_LEN = 14;
export const TIMEOUT_UDP = 13;

/**
 * conn_reuse_mode (IPVS's sysctl of that name), per service index in the low bits of svcFlags[]: what a TCP SYN
 * (without ACK or RST) that finds its client's entry still in the table does. 0: the entry is
 * reused (the old server, not counted as a connection); bit 1: an entry in TIME_WAIT or CLOSE is
 * expired and the SYN scheduled afresh; bit 2: so is one in FIN_WAIT (IPVS: with
 * IP_VS_CONN_F_NOOUTPUT, which Direct Routing always is). lbd's default is 2.
 */
export const CONN_REUSE_MODES = [0, 1, 2] as const;
export const CONN_REUSE_DEFAULT = 2;

/**
 * svcFlags[] bits, per service index, written by the control plane (IPVS keeps such bits in
 * svc->flags): the low two are the service's conn_reuse_mode (0..2); SVC_F_ON_MISS_HASH is
 * on_miss: hash, under which a TCP segment of a connection under way (ACK, neither SYN nor RST)
 * that finds no entry is scheduled like a new flow instead of dropped as no_connection (IPVS's
 * sloppy_tcp, narrower: a client's every segment after its SYN carries ACK, so SYN|ACK
 * backscatter, bare FINs and flagless junk open nothing, as without on_miss).
 */
export const SVC_F_REUSE_MASK = 3;
export const SVC_F_ON_MISS_HASH = 4;

/** May a TCP segment with these flags and without an entry open one, for a service with these svcFlags? */
export function opensOnMiss(svcFlags: number, tcpFlags: number): boolean {
  const f = tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST);
  return f === TCP_SYN || ((svcFlags & SVC_F_ON_MISS_HASH) !== 0 && f === TCP_ACK);
}

/** is_new_conn_expected() of IPVS for a TCP entry in `state` under `mode`. */
export function reuseReschedules(mode: number, state: number): boolean {
  if (mode === 0) return false;
  return state === ConnState.TimeWait || state === ConnState.Close || ((mode & 2) !== 0 && state === ConnState.FinWait);
}

/** Every array of the shared state, by the name the addon's attach() also uses. */
export interface StateArrays {
  // The connection table (entry layout above): the fast path looks up, tracks and writes
  // expires/state/flags; TypeScript inserts (schedule), sweeps and removes.
  keyAddr: Uint32Array;
  keyPort: Uint32Array;
  dest: Int32Array;
  state: Uint8Array;
  flags: Uint8Array;
  expires: Uint32Array;
  refs: Uint32Array;
  // The persistence templates, the same layout (TypeScript only).
  tplKeyAddr: Uint32Array;
  tplKeyPort: Uint32Array;
  tplDest: Int32Array;
  tplState: Uint8Array;
  tplFlags: Uint8Array;
  tplExpires: Uint32Array;
  tplRefs: Uint32Array;
  // Real servers by global dest index. mac (6 bytes each), macKnown and downAction are written by
  // the control plane; active/inactive by both paths (state changes), packets/bytes by the path
  // that forwards, persistent and conns by TypeScript (templates, scheduling).
  mac: Uint8Array;
  macKnown: Uint8Array;
  active: Int32Array;
  inactive: Int32Array;
  persistent: Int32Array;
  destConns: Float64Array;
  destPackets: Float64Array;
  destBytes: Float64Array;
  downAction: Uint8Array;
  // Who each real server is, so that another lbd reading this region (a restart adopting a state
  // file) can tell which of its own servers an entry means: address, port and its service's index
  // + 1 (0: no server has this index), written when the server is added; its health verdict
  // (DEST_HEALTH_*), written by the health checks. TypeScript only.
  destAddr: Uint32Array;
  destPort: Uint32Array;
  destSvc: Int32Array;
  destHealth: Uint8Array;
  // Services: the lookup table (VIP, port << 8 | protocol) by table slot, svcMeta = [count, then
  // the service index in each slot], written by the ServiceTable; svcStats = [packets, bytes]
  // per service index, added to by the path that forwards.
  svcVip: Uint32Array;
  svcPortProto: Uint32Array;
  svcMeta: Int32Array;
  svcStats: Float64Array;
  // SVC_F_* bits per service index (conn_reuse_mode, on_miss), written by the control plane.
  svcFlags: Uint8Array;
  // Who each service index is (VIP, port << 8 | protocol; 0: none) and its persistence (seconds,
  // netmask), which the templates' keys depend on; written by the ServiceTable. TypeScript only.
  svcKeyVip: Uint32Array;
  svcKeyPortProto: Uint32Array;
  svcPersist: Uint32Array;
  svcPersistMask: Uint32Array;
  // Counters (Counter, Drop), added to by both paths.
  counters: Float64Array;
  drops: Float64Array;
  // Parameters, written by TypeScript: the coarse clock in seconds, the timeouts in seconds, the
  // capture interface's MAC then the egress interface's (6 bytes each).
  clock: Float64Array;
  timeouts: Uint32Array;
  macs: Uint8Array;
  // The egress interface's MTU: a frame with DF set that is larger is not forwarded (too_big).
  egressMtu: Uint32Array;
}

export type StateElement = 'u8' | 'i32' | 'u32' | 'f64';
export interface StateField {
  name: keyof StateArrays;
  type: StateElement;
  length: number;
}

/**
 * The region's fields in order: `connSlots` connection-table slots and `templateSlots` template
 * slots (both powers of two). Each field starts at a multiple of 8 bytes.
 */
export function stateLayout(connSlots: number, templateSlots: number): readonly StateField[] {
  const f = (name: keyof StateArrays, type: StateElement, length: number): StateField => ({ name, type, length });
  return [
    f('keyAddr', 'u32', connSlots),
    f('keyPort', 'u32', connSlots),
    f('dest', 'i32', connSlots),
    f('expires', 'u32', connSlots),
    f('refs', 'u32', connSlots),
    f('state', 'u8', connSlots),
    f('flags', 'u8', connSlots),
    f('tplKeyAddr', 'u32', templateSlots),
    f('tplKeyPort', 'u32', templateSlots),
    f('tplDest', 'i32', templateSlots),
    f('tplExpires', 'u32', templateSlots),
    f('tplRefs', 'u32', templateSlots),
    f('tplState', 'u8', templateSlots),
    f('tplFlags', 'u8', templateSlots),
    f('mac', 'u8', MAX_DESTS * 6),
    f('macKnown', 'u8', MAX_DESTS),
    f('active', 'i32', MAX_DESTS),
    f('inactive', 'i32', MAX_DESTS),
    f('persistent', 'i32', MAX_DESTS),
    f('destConns', 'f64', MAX_DESTS),
    f('destPackets', 'f64', MAX_DESTS),
    f('destBytes', 'f64', MAX_DESTS),
    f('downAction', 'u8', MAX_DESTS),
    f('destAddr', 'u32', MAX_DESTS),
    f('destPort', 'u32', MAX_DESTS),
    f('destSvc', 'i32', MAX_DESTS),
    f('destHealth', 'u8', MAX_DESTS),
    f('svcVip', 'u32', MAX_SERVICES),
    f('svcPortProto', 'u32', MAX_SERVICES),
    f('svcMeta', 'i32', MAX_SERVICES + 1),
    f('svcStats', 'f64', SERVICE_INDEXES * 2),
    f('svcFlags', 'u8', SERVICE_INDEXES),
    f('svcKeyVip', 'u32', SERVICE_INDEXES),
    f('svcKeyPortProto', 'u32', SERVICE_INDEXES),
    f('svcPersist', 'u32', SERVICE_INDEXES),
    f('svcPersistMask', 'u32', SERVICE_INDEXES),
    f('counters', 'f64', COUNTER_COUNT),
    f('drops', 'f64', DROP_REASONS.length),
    f('clock', 'f64', 1),
    f('timeouts', 'u32', TIMEOUTS_LEN),
    f('macs', 'u8', 12),
    f('egressMtu', 'u32', 1),
  ];
}

/** Connection-table slots for a capacity: at most half full, so linear probing stays short. */
export function connSlotsFor(capacity: number): number {
  let slots = 1024;
  while (slots < capacity * 2) slots *= 2;
  return slots;
}
