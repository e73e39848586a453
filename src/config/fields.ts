/**
 * The keys of lb.yaml as data: for each section its fields with type, default, range or
 * choices and a description. One generic validator (./validate.ts) walks this table against the
 * YAML document; the rules that relate several fields are in ./rules.ts and are referenced here
 * by the section or field they belong to. Key order is the order messages list the keys in
 * (and "did you mean" prefers the earlier of two equally close keys), so keep it.
 *
 * The descriptions are meant for a generated JSON Schema and for documentation.
 */
import { MH_TABLE_SIZES, MH_TABLE_SIZE_DEFAULT, SCHEDULER_NAMES } from '../scheduler/index';
import {
  buildAdmin,
  buildConfig,
  buildHealthCheck,
  buildInterfaces,
  buildMetrics,
  buildRealServer,
  announceRules,
  buildService,
  buildSorryServer,
  healthCheckRules,
  realServerRules,
  realServerShorthand,
  schedulerRules,
  sorryServerRules,
  sorryServerShorthand,
  thresholdRule,
  uniqueRealServers,
  uniqueServices,
} from './rules';
import {
  DATAPLANE_MODES,
  DEFAULTS,
  DEFENSE_MODES,
  HEALTH_CHECK_TYPES,
  HEALTH_DEFAULTS,
  INITIAL_STATES,
  LOG_LEVELS,
  ON_DOWN_ACTIONS,
  ON_MISS_ACTIONS,
  ON_REMOVE_ACTIONS,
  PROTOCOLS,
} from './types';
import type { SectionResult, Validator } from './validate';
import {
  ANNOUNCE_DELAY_MAX,
  ANNOUNCE_TABLE_MAX,
  BUSY_POLL_MAX,
  CONN_TABLE_MAX,
  CONN_TABLE_MIN,
  PORT_MAX,
  PORT_MIN,
  QUORUM_MAX,
  RISE_FALL_MAX,
  THRESHOLD_MAX,
  WEIGHT_MAX,
} from './values';

/**
 * How a value is read (./readers.ts has one reader per scalar type, with its messages):
 * - int: an integer in [min, max];  bool: true or false;  enum: one of `choices`
 * - duration: seconds, or text such as 500ms, 2s, 1m, 1h, 1m30s (normalized to seconds)
 * - ipv4: a unicast IPv4 host address;  netmask: a contiguous IPv4 netmask
 * - mac: a unicast MAC address (normalized to aa:bb:cc:dd:ee:ff);  listen: IPv4 host:port
 * - ifname: a Linux interface name;  socket: an absolute unix socket path;  path: an absolute file path
 * - group: a unix group name or a numeric gid (a number)
 * - service-name: letters, digits, "_", "." and "-";  http-path: starts with "/"
 * - http-host: a Host header value;  status-set: HTTP codes, ranges and lists;  regex
 * - section: a mapping of further fields;  list: a list of sections (`section` is the item)
 */
export type FieldType =
  | 'section'
  | 'list'
  | 'int'
  | 'bool'
  | 'enum'
  | 'duration'
  | 'ipv4'
  | 'netmask'
  | 'mac'
  | 'listen'
  | 'ifname'
  | 'socket'
  | 'group'
  | 'path'
  | 'service-name'
  | 'http-path'
  | 'http-host'
  | 'status-set'
  | 'regex';

export type ScalarType = Exclude<FieldType, 'section' | 'list'>;
export type DefaultValue = string | number | boolean;

/** A rule relating the fields of one section; reports problems and marks the section failed. */
export type SectionRule = (v: Validator, r: SectionResult) => void;
/** Checks one item of a list against the items before it (one instance per list). */
export type ItemRule = (v: Validator, item: SectionResult, index: number) => void;

export interface Field {
  key: string;
  type: FieldType;
  /** What the key means (one line, for the schema and the docs). */
  description: string;
  /** Set when the key must be written: the hint of `missing required key "key" (hint)`. */
  required?: string;
  /** Filled into the normalized config when the key is left out. */
  default?: DefaultValue;
  /** Left out of the normalized config when not written; the daemon then behaves as this value. */
  implied?: DefaultValue;
  /** When the default comes from elsewhere: where (documentation only; ./rules.ts applies it). */
  derived?: string;
  /** int: inclusive range; duration: `max` seconds (with `maxText` in the message). */
  min?: number;
  max?: number;
  maxText?: string;
  /** duration: 0 is refused. */
  positive?: boolean;
  /** enum: the valid values, in the order messages list them. */
  choices?: readonly string[];
  /** enum: what a value is called ("log level"); ipv4: the role ("a VIP"). */
  noun?: string;
  /** bool: with nothing after the key, the key itself is what "got ..." shows. */
  valueOrKey?: boolean;
  /** Valid only when a sibling key has this value (else refused by the section's rules). */
  onlyWhen?: { key: string; equals: string };
  /** section: its fields; list: the fields of each item. */
  section?: Section;
  /** section: an override of the section of the same key in the `inherit` ancestor: only the keys written, required keys may be inherited. */
  inherit?: string;
  /** list: what one item and several items are called in messages. */
  item?: string;
  items?: string;
  /** list: a new check of each item against the earlier ones (duplicates). */
  eachItem?: () => ItemRule;
  /** A rule run right after this field was read. */
  after?: SectionRule;
}

export interface Section {
  /** Identifies the section for rules that look up an ancestor ("service"). */
  name: string;
  /** How a mapping of this section is called in "expected ... (keys: ...)". */
  what: string;
  /** Replaces the whole "expected ..." text for a value that is no mapping (and no shorthand). */
  expected?: string;
  /** A key with nothing under it means an empty mapping (all defaults). */
  nullIsEmpty: boolean;
  fields: readonly Field[];
  /** Order the fields are validated in, when it differs from `fields` (a field needs another's value). */
  order?: readonly string[];
  /** Reads a string written instead of the mapping ("10.0.10.40:80"). */
  shorthand?: (v: Validator, r: SectionResult) => void;
  /** Cross-field rules, run after every field. */
  rules?: readonly SectionRule[];
  /** The normalized value; undefined when the section is invalid. Default: every field, defaults filled in. */
  build?: (v: Validator, r: SectionResult) => unknown;
}

const port = (description: string, extra: Partial<Field> = {}): Field => ({ key: 'port', type: 'int', min: PORT_MIN, max: PORT_MAX, description, ...extra });

export const HEALTH_CHECK: Section = {
  name: 'health_check',
  what: 'a health_check mapping',
  nullIsEmpty: false,
  fields: [
    {
      key: 'type',
      type: 'enum',
      choices: HEALTH_CHECK_TYPES,
      noun: 'health check type',
      required: HEALTH_CHECK_TYPES.join(', '),
      description: 'tcp: a TCP connect; http: a GET checked for status and body; vip: a SYN to the VIP in a frame for the real server',
    },
    { key: 'interval', type: 'duration', positive: true, default: HEALTH_DEFAULTS.interval, description: 'between the starts of two checks' },
    {
      key: 'timeout',
      type: 'duration',
      positive: true,
      default: HEALTH_DEFAULTS.timeout,
      derived: 'at most interval',
      description: 'per check; must not exceed interval',
    },
    { key: 'rise', type: 'int', min: 1, max: RISE_FALL_MAX, default: HEALTH_DEFAULTS.rise, description: 'consecutive successes that bring a down server up' },
    { key: 'fall', type: 'int', min: 1, max: RISE_FALL_MAX, default: HEALTH_DEFAULTS.fall, description: 'consecutive failures that take an up server down' },
    { key: 'path', type: 'http-path', default: HEALTH_DEFAULTS.path, onlyWhen: { key: 'type', equals: 'http' }, description: 'http: the request path' },
    { key: 'host', type: 'http-host', derived: "the real server's address", onlyWhen: { key: 'type', equals: 'http' }, description: 'http: the Host header' },
    {
      key: 'expect_status',
      type: 'status-set',
      default: HEALTH_DEFAULTS.expectStatus,
      onlyWhen: { key: 'type', equals: 'http' },
      description: 'http: accepted status codes: a code, a range or a comma list (200, "200-299", "200,301-302")',
    },
    {
      key: 'expect_body',
      type: 'regex',
      onlyWhen: { key: 'type', equals: 'http' },
      description: 'http: a regular expression the body (first 64 KiB) must match',
    },
    port('the port checked', { derived: 'the service port' }),
  ],
  rules: [healthCheckRules],
  build: buildHealthCheck,
};

const SORRY_SERVER: Section = {
  name: 'sorry_server',
  what: 'a sorry_server mapping (address, optional mac) or an address',
  nullIsEmpty: false,
  fields: [
    {
      key: 'address',
      type: 'ipv4',
      noun: 'a sorry server',
      required: 'the sorry server IPv4 address',
      description: "the sorry server's own IPv4 address (it carries the VIP on its loopback like a real server)",
    },
    { key: 'mac', type: 'mac', derived: 'ARP on the egress interface', description: "the sorry server's MAC; otherwise resolved by ARP" },
  ],
  shorthand: sorryServerShorthand,
  rules: [sorryServerRules],
  build: buildSorryServer,
};

const REAL_SERVER: Section = {
  name: 'real_server',
  what: 'a real server mapping',
  expected: 'a real server: a mapping with address (and optional port, weight, mac, u_threshold, l_threshold) or a string "address[:port]"',
  nullIsEmpty: true,
  fields: [
    {
      key: 'address',
      type: 'ipv4',
      noun: 'a real server',
      required: 'the real server IPv4 address',
      description: "the real server's own IPv4 address (not the VIP)",
    },
    port('must equal the service port: Direct Routing cannot change ports', { derived: 'the service port' }),
    { key: 'weight', type: 'int', min: 0, max: WEIGHT_MAX, default: DEFAULTS.weight, description: '0 = quiesced: no new connections, existing ones continue' },
    {
      key: 'mac',
      type: 'mac',
      derived: 'ARP on the egress interface',
      description: "the real server's MAC; otherwise resolved by ARP on the egress interface and followed when it changes",
    },
    {
      key: 'u_threshold',
      type: 'int',
      min: 0,
      max: THRESHOLD_MAX,
      implied: 0,
      description: 'like ipvsadm -x: at this many connections (active + inactive) the server is overloaded and gets no new ones; 0 = none',
    },
    {
      key: 'l_threshold',
      type: 'int',
      min: 0,
      max: THRESHOLD_MAX,
      implied: 0,
      after: thresholdRule,
      description: 'like ipvsadm -y: an overloaded server gets new connections again below this (0: below 3/4 of u_threshold); at most u_threshold',
    },
    {
      key: 'health_check',
      type: 'section',
      section: HEALTH_CHECK,
      inherit: 'service',
      description: "overrides of the service's health_check for this server (only the keys written)",
    },
  ],
  shorthand: realServerShorthand,
  rules: [realServerRules],
  build: buildRealServer,
};

export const SERVICE: Section = {
  name: 'service',
  what: 'a service mapping',
  nullIsEmpty: false,
  fields: [
    {
      key: 'name',
      type: 'service-name',
      required: 'a unique name of letters, digits, "_", "." or "-"',
      description: 'unique; letters, digits, "_", "." and "-"; used in metrics labels',
    },
    {
      key: 'vip',
      type: 'ipv4',
      noun: 'a VIP',
      required: 'the virtual IPv4 address, e.g. 10.0.10.100',
      description: 'the virtual IPv4 address clients connect to',
    },
    port('the virtual port', { required: 'the service port 1-65535' }),
    { key: 'protocol', type: 'enum', choices: PROTOCOLS, noun: 'protocol', default: DEFAULTS.protocol, description: 'tcp or udp' },
    {
      key: 'scheduler',
      type: 'enum',
      choices: SCHEDULER_NAMES,
      noun: 'scheduler',
      default: DEFAULTS.scheduler,
      description: 'the IPVS scheduler (IPVS semantics)',
    },
    {
      key: 'persistence',
      type: 'duration',
      default: DEFAULTS.persistence,
      description: 'how long a client network sticks to its real server (ipvsadm -p); 0 = off',
    },
    { key: 'persistence_netmask', type: 'netmask', default: DEFAULTS.persistenceNetmask, description: 'how clients are grouped for persistence (ipvsadm -M)' },
    {
      key: 'real_servers',
      type: 'list',
      section: REAL_SERVER,
      item: 'real server',
      items: 'real servers',
      required: 'at least one real server',
      eachItem: uniqueRealServers,
      description: 'the real servers: mappings, or the shorthand "address" / "address:port"',
    },
    { key: 'health_check', type: 'section', section: HEALTH_CHECK, description: 'health checks of the real servers; none = every server is up' },
    {
      key: 'on_down',
      type: 'enum',
      choices: ON_DOWN_ACTIONS,
      noun: 'on_down action',
      implied: HEALTH_DEFAULTS.onDown,
      description: 'existing flows of a server that failed its check: reschedule, drop or keep',
    },
    {
      key: 'inhibit_on_failure',
      type: 'bool',
      implied: HEALTH_DEFAULTS.inhibitOnFailure,
      description: 'a down server stays listed with weight 0 instead of flagged down',
    },
    {
      key: 'quorum',
      type: 'int',
      min: 1,
      max: QUORUM_MAX,
      implied: HEALTH_DEFAULTS.quorum,
      description: 'fewer servers up than this: new flows go to the sorry server',
    },
    { key: 'sorry_server', type: 'section', section: SORRY_SERVER, description: 'where new flows go below quorum: a mapping (address, mac) or an address' },
    {
      key: 'initial_state',
      type: 'enum',
      choices: INITIAL_STATES,
      noun: 'initial state',
      implied: HEALTH_DEFAULTS.initialState,
      description: "a checked server's state before its first verdicts",
    },
    {
      key: 'on_remove',
      type: 'enum',
      choices: ON_REMOVE_ACTIONS,
      noun: 'on_remove action',
      derived: 'the top-level on_remove',
      description: 'removing a real server of this service: drain (its flows continue) or drop (they are cut)',
    },
    {
      key: 'conn_reuse_mode',
      type: 'int',
      min: 0,
      max: 2,
      derived: 'the top-level conn_reuse_mode',
      description: "this service's conn_reuse_mode (0, 1 or 2, IPVS's meanings); overrides the top-level one",
    },
    {
      key: 'mh_table_size',
      type: 'int',
      min: MH_TABLE_SIZES[0],
      max: MH_TABLE_SIZES[MH_TABLE_SIZES.length - 1],
      implied: MH_TABLE_SIZE_DEFAULT,
      description: `mh: entries of the Maglev lookup table, a prime: ${MH_TABLE_SIZES.join(', ')} (IPVS's sizes and the paper's 65537)`,
    },
    {
      key: 'mh_fallback',
      type: 'bool',
      implied: false,
      description: 'mh: a flow whose server cannot take it goes to the next one the hash picks (ipvsadm -b mh-fallback)',
    },
    { key: 'mh_port', type: 'bool', implied: false, description: "mh: hash the client's source port with its address (ipvsadm -b mh-port)" },
    {
      key: 'sh_fallback',
      type: 'bool',
      implied: false,
      description: 'sh: a flow whose server cannot take it goes to the next bucket with one that can (ipvsadm -b sh-fallback)',
    },
    { key: 'sh_port', type: 'bool', implied: false, description: "sh: hash the client's source port with its address (ipvsadm -b sh-port)" },
    {
      key: 'on_miss',
      type: 'enum',
      choices: ON_MISS_ACTIONS,
      noun: 'on_miss action',
      implied: 'drop',
      description: 'a TCP segment without SYN and without a connection entry: drop it, or (mh, sh) schedule it by the hash, as another balancer did',
    },
  ],
  // The service's health_check before the real servers, whose overrides build on it.
  order: [
    'name',
    'vip',
    'port',
    'protocol',
    'scheduler',
    'mh_table_size',
    'mh_fallback',
    'mh_port',
    'sh_fallback',
    'sh_port',
    'on_miss',
    'persistence',
    'persistence_netmask',
    'health_check',
    'on_down',
    'inhibit_on_failure',
    'quorum',
    'initial_state',
    'sorry_server',
    'on_remove',
    'conn_reuse_mode',
    'real_servers',
  ],
  rules: [schedulerRules],
  build: buildService,
};

const simple = (name: string, fields: Field[], build?: Section['build']): Section => ({ name, what: 'a mapping', nullIsEmpty: true, fields, build });

/** The top level of lb.yaml. */
export const CONFIG: Section = simple(
  'config',
  [
    {
      key: 'interfaces',
      type: 'section',
      required: 'the capture interface, e.g. interfaces: { capture: eth0 }',
      description: 'the network interfaces lbd uses',
      section: simple(
        'interfaces',
        [
          { key: 'capture', type: 'ifname', required: 'the interface VIP traffic arrives on, e.g. eth0', description: 'interface where VIP traffic arrives' },
          { key: 'egress', type: 'ifname', derived: 'interfaces.capture', description: 'interface frames leave on for the real servers (two-NIC setups)' },
        ],
        buildInterfaces,
      ),
    },
    {
      key: 'metrics',
      type: 'section',
      description: 'the Prometheus endpoint',
      section: simple(
        'metrics',
        [{ key: 'listen', type: 'listen', default: DEFAULTS.metricsListen, description: 'where /metrics is served: IPv4 host:port' }],
        buildMetrics,
      ),
    },
    {
      key: 'log',
      type: 'section',
      description: 'logging',
      section: simple('log', [
        {
          key: 'level',
          type: 'enum',
          choices: LOG_LEVELS,
          noun: 'log level',
          default: DEFAULTS.logLevel,
          description: 'the least severe level logged (--log-level overrides)',
        },
      ]),
    },
    {
      key: 'dataplane',
      type: 'enum',
      choices: DATAPLANE_MODES,
      noun: 'dataplane mode',
      default: DEFAULTS.dataplane,
      description: 'auto: the native fast path if it loads, else TypeScript; native: refuse to start without it; ts: TypeScript only',
    },
    {
      key: 'busy_poll',
      type: 'duration',
      default: 0,
      max: BUSY_POLL_MAX,
      maxText: '1ms (a wake-up of the native loop yields after 1 ms anyway)',
      description: 'native path: keep polling the capture ring this long after it ran dry before sleeping (like net.core.busy_poll); 0 = off',
    },
    {
      key: 'connection_table',
      type: 'section',
      description: 'the connection table',
      section: simple('connection_table', [
        {
          key: 'size',
          type: 'int',
          min: CONN_TABLE_MIN,
          max: CONN_TABLE_MAX,
          default: DEFAULTS.connTableSize,
          description: 'maximum tracked flows; memory is allocated up front',
        },
        {
          key: 'syn_flood_defense',
          type: 'enum',
          choices: DEFENSE_MODES,
          noun: 'defense mode',
          default: DEFAULTS.synFloodDefense,
          description:
            "SYN-flood defense (IPVS's secure_tcp and drop_entry): unestablished entries give way to new connections in a full table, and live defense_syn_recv_timeout while it is on; auto: on from defense_threshold percent full; on: always; off: never (a full table drops new flows as table_full)",
        },
        {
          key: 'defense_threshold',
          type: 'int',
          min: 1,
          max: 100,
          default: DEFAULTS.defenseThreshold,
          description: 'percent of connection_table.size from which auto turns the defense on (off again below three quarters of it)',
        },
        {
          key: 'defense_syn_recv_timeout',
          type: 'duration',
          positive: true,
          max: 60,
          maxText: '60s',
          default: DEFAULTS.defenseSynRecvTimeout,
          description: 'how long a half-open (SYN_RECV) entry lives while the defense is on (60 s otherwise, as in IPVS)',
        },
      ]),
    },
    {
      key: 'timeouts',
      type: 'section',
      description: 'idle timeouts of tracked flows, like ipvsadm --set tcp tcpfin udp',
      section: simple('timeouts', [
        { key: 'tcp', type: 'duration', positive: true, default: DEFAULTS.timeouts.tcp, description: 'established TCP connections' },
        { key: 'tcpfin', type: 'duration', positive: true, default: DEFAULTS.timeouts.tcpfin, description: 'TCP connections after a FIN' },
        { key: 'udp', type: 'duration', positive: true, default: DEFAULTS.timeouts.udp, description: 'UDP flows' },
      ]),
    },
    {
      key: 'services',
      type: 'list',
      section: SERVICE,
      item: 'service',
      items: 'services',
      required: 'at least one service',
      eachItem: uniqueServices,
      description: 'the virtual services (VIP:port/protocol), at least one',
    },
    {
      key: 'admin',
      type: 'section',
      description: 'the admin interface the CLI talks to',
      section: simple(
        'admin',
        [
          {
            key: 'socket',
            type: 'socket',
            default: DEFAULTS.adminSocket,
            description: 'the admin unix socket (mode 0660: its owner and its group; a directory lbd creates for it is 0750)',
          },
          {
            key: 'group',
            type: 'group',
            derived: "lbd's primary group (systemd's Group=)",
            description:
              'the group the admin socket (and a directory lbd creates for it) belongs to, whose members may use lbd list and the other commands: a group name of /etc/group or a numeric gid',
          },
        ],
        buildAdmin,
      ),
    },
    {
      key: 'on_remove',
      type: 'enum',
      choices: ON_REMOVE_ACTIONS,
      noun: 'on_remove action',
      implied: DEFAULTS.onRemove,
      description: 'removing a real server: drain (its flows continue) or drop (they are cut, IPVS expire_nodest_conn); also per service',
    },
    {
      key: 'expire_nodest_conn',
      type: 'bool',
      implied: false,
      description:
        "like IPVS expire_nodest_conn: true makes drop the on_remove of every service that sets none (frames of a removed server's flows are dropped)",
    },
    {
      key: 'conn_reuse_mode',
      type: 'int',
      min: 0,
      max: 2,
      default: DEFAULTS.connReuseMode,
      description:
        'like IPVS conn_reuse_mode: a SYN on a client port whose entry remains: 0 reuses the entry (old server, not counted); 1 reschedules from TIME_WAIT/CLOSE; 2 also from FIN_WAIT (the last state DR sees); also per service',
    },
    {
      key: 'state_file',
      type: 'path',
      description:
        'where the connection table lives (memory-mapped, on tmpfs) so that a restart, crash or upgrade of lbd keeps every connection; default /run/lbd/lbd_<capture>.state',
    },
    {
      key: 'announce',
      type: 'section',
      description:
        'announce the VIPs to a routing daemon (BIRD learns them from a kernel table and exports them by BGP): a /32 route per VIP that can serve, through a TAP interface that dies with lbd; absent = no announcing',
      section: {
        ...simple('announce', [
          {
            key: 'interface',
            type: 'ifname',
            derived: 'lbdv-<capture>',
            description: 'the TAP interface the VIP routes go through; it exists while lbd lives',
          },
          {
            key: 'table',
            type: 'int',
            min: 1,
            max: ANNOUNCE_TABLE_MAX,
            default: DEFAULTS.announceTable,
            description: "the kernel routing table the routes go into (BIRD's kernel protocol learns it); not main (254), local (255) or default (253)",
          },
          {
            key: 'hold_on_restart',
            type: 'duration',
            default: DEFAULTS.announceHold,
            max: ANNOUNCE_DELAY_MAX,
            maxText: '5m',
            description: 'SIGTERM or lbd stop (the state is kept for the next lbd): the routes stay this long for it to take over; 0 = withdraw at once',
          },
          {
            key: 'withdraw_delay',
            type: 'duration',
            default: DEFAULTS.announceWithdrawDelay,
            max: ANNOUNCE_DELAY_MAX,
            maxText: '5m',
            description: 'a stop that withdraws: withdraw first, keep forwarding this long while the routers move the flows away, then stop',
          },
          {
            key: 'hang_timeout',
            type: 'duration',
            positive: true,
            default: DEFAULTS.announceHangTimeout,
            max: ANNOUNCE_DELAY_MAX,
            maxText: '5m',
            description: "lbd's event loop stalled this long (a hang, SIGSTOP): the routes are withdrawn until it runs again",
          },
        ]),
        rules: [announceRules],
      },
    },
    {
      key: 'local_access',
      type: 'bool',
      valueOrKey: true,
      default: false,
      description: 'make the VIPs reachable from the balancer itself (a TAP interface lbd-<capture> that exists while lbd runs, and /32 routes through it)',
    },
  ],
  buildConfig,
);
