import { ConnState, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from './contract';

/**
 * TCP state tracking as IPVS does it for Direct Routing, where the balancer sees only the
 * client's half of the conversation: the INPUT-ONLY rows of ip_vs_proto_tcp.c's tcp_states.
 * Columns are the current state (IPVS order: NONE ES SYN_SENT SYN_RECV FIN_WAIT TIME_WAIT
 * CLOSE CLOSE_WAIT LAST_ACK LISTEN SYNACK); rows are the segment's deciding flag.
 */

// prettier-ignore
const INPUT_ONLY: readonly (readonly number[])[] = [
  /* syn */ [ConnState.SynRecv, ConnState.Established, ConnState.Established, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv, ConnState.SynRecv],
  /* fin */ [ConnState.Close, ConnState.FinWait, ConnState.SynSent, ConnState.TimeWait, ConnState.FinWait, ConnState.TimeWait, ConnState.Close, ConnState.CloseWait, ConnState.LastAck, ConnState.Listen, ConnState.TimeWait],
  /* ack */ [ConnState.Close, ConnState.Established, ConnState.SynSent, ConnState.Established, ConnState.FinWait, ConnState.TimeWait, ConnState.Close, ConnState.CloseWait, ConnState.Close, ConnState.Listen, ConnState.Established],
  /* rst */ [ConnState.Close, ConnState.Close, ConnState.Close, ConnState.SynRecv, ConnState.Close, ConnState.Close, ConnState.Close, ConnState.Close, ConnState.LastAck, ConnState.Listen, ConnState.Close],
];
const TRANSITIONS = new Uint8Array(4 * 11);
INPUT_ONLY.forEach((row, r) => row.forEach((s, c) => (TRANSITIONS[r * 11 + c] = s)));

/** The state after a segment with `flags` arrives in `state`; RST outranks SYN outranks FIN outranks ACK, as in IPVS. */
export function nextTcpState(state: number, flags: number): number {
  let row: number;
  if (flags & TCP_RST) row = 3;
  else if (flags & TCP_SYN) row = 0;
  else if (flags & TCP_FIN) row = 1;
  else if (flags & TCP_ACK) row = 2;
  else return state; // no deciding flag: IPVS leaves the state alone
  return TRANSITIONS[row * 11 + state];
}

/** Per-state timeouts in seconds: IPVS's tcp_timeouts, with `ipvsadm --set`'s three knobs. */
export function tcpTimeouts(tcp: number, tcpfin: number): Uint32Array {
  const t = new Uint32Array(13);
  t[ConnState.None] = 2;
  t[ConnState.Established] = tcp;
  t[ConnState.SynSent] = 120;
  t[ConnState.SynRecv] = 60;
  t[ConnState.FinWait] = tcpfin;
  t[ConnState.TimeWait] = 120;
  t[ConnState.Close] = 10;
  t[ConnState.CloseWait] = 60;
  t[ConnState.LastAck] = 30;
  t[ConnState.Listen] = 120;
  t[ConnState.SynAck] = 120;
  return t;
}
