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
}
export const COUNTER_COUNT = 7;

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

/** The slot hash both implementations use. Integer-only so C computes the same bits. */
export function flowHash(addr: number, port: number): number {
  let h = Math.imul(addr ^ Math.imul(port, 0x9e3779b1), 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
