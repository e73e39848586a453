/*
 * lbd-gen: a small TCP frame generator for the benchmark harness.
 *
 * Sends Ethernet/IPv4/TCP frames (54 bytes, correct IP and TCP checksums) on one interface
 * through an AF_PACKET socket with sendmmsg(), paced or as fast as it can, for a bounded count
 * and time. Frames carry the source and destination MACs given on the command line, so no ARP
 * is involved: the harness points them at the balancer inside the lab.
 *
 *   --mode syn      every frame is a SYN of a new flow: flow f = offset + i gets source address
 *                   src-net + f / 64000 and source port 1024 + f % 64000
 *                   --cycle N: flow offset + i % N instead (N <= 64000: one source address
 *                   cycling N ports, its repeated SYNs refreshing its own half-open entries);
 *                   --random: a pseudo-random source in src-net/16 and port per frame (spoofed
 *                   sources, each SYN most likely a new flow)
 *   --mode steady   first a SYN for each of --flows flows (in batches, 1 ms apart, before the
 *                   measured phase), then ACKs cycling over those flows
 *
 * With --wait-go the generator prints "ready" after its setup (and the steady-state SYNs) and
 * waits for a line on stdin before the measured phase, so the harness can read its counters
 * right before. At the end it prints one JSON line: frames sent, elapsed wall time, its own
 * CPU time over the measured phase (CLOCK_THREAD_CPUTIME_ID, precise: on veth this includes
 * the receive-side softirq work the kernel does in the sender's context), send errors.
 *
 * Build: gcc -O2 -Wall -o gen gen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_LEN 54
#define MAX_BATCH 256
#define PORTS_PER_ADDR 64000u

static void die(const char *msg) {
  fprintf(stderr, "gen: %s: %s\n", msg, strerror(errno));
  exit(2);
}

static void usage(void) {
  fprintf(stderr,
          "usage: gen --ifname IF --src-mac MAC --dst-mac MAC --dst-ip IP [--dport 80]\n"
          "           [--mode syn|steady] [--flows 1024] [--src-net 198.18.0.0] [--flow-offset 0]\n"
          "           [--rate PPS (0 = max)] [--count N] [--duration SEC] [--batch 64] [--wait-go]\n"
          "           [--cycle N | --random] (syn mode)\n");
  exit(2);
}

static int parse_mac(const char *s, uint8_t out[6]) {
  unsigned v[6];
  if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
  for (int i = 0; i < 6; i++) {
    if (v[i] > 255) return -1;
    out[i] = (uint8_t)v[i];
  }
  return 0;
}

static uint64_t now_ns(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t n) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)((p[i] << 8) | p[i + 1]);
  if (n & 1) sum += (uint32_t)(p[n - 1] << 8);
  return sum;
}

struct cfg {
  uint8_t src_mac[6], dst_mac[6];
  uint32_t dst_ip, src_net; /* host order */
  uint16_t dport;
  int steady;
  uint32_t flows;
  uint64_t offset;
  double rate;
  uint64_t count;
  double duration;
  int batch;
  uint64_t cycle; /* syn mode: flows cycle over this many (0: every frame a new flow) */
  int random;     /* syn mode: pseudo-random sources */
};

/* splitmix64: the random mode's source for frame i (deterministic per run). */
static uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Fill one frame for flow f (absolute index) with the given TCP flags and sequence number. */
static void fill(uint8_t *fr, const struct cfg *c, uint64_t f, uint8_t flags, uint32_t seq) {
  uint32_t saddr = c->src_net + (uint32_t)(f / PORTS_PER_ADDR);
  uint16_t sport = (uint16_t)(1024 + f % PORTS_PER_ADDR);
  memcpy(fr, c->dst_mac, 6);
  memcpy(fr + 6, c->src_mac, 6);
  fr[12] = 0x08;
  fr[13] = 0x00;
  uint8_t *ip = fr + 14;
  ip[0] = 0x45;
  ip[1] = 0;
  ip[2] = 0;
  ip[3] = 40; /* total length */
  ip[4] = (uint8_t)(f >> 8);
  ip[5] = (uint8_t)f; /* id */
  ip[6] = 0x40;       /* DF */
  ip[7] = 0;
  ip[8] = 64;
  ip[9] = 6;
  ip[10] = ip[11] = 0;
  uint32_t s = htonl(saddr), d = htonl(c->dst_ip);
  memcpy(ip + 12, &s, 4);
  memcpy(ip + 16, &d, 4);
  uint16_t ipc = csum_fold(csum_add(0, ip, 20));
  ip[10] = (uint8_t)(ipc >> 8);
  ip[11] = (uint8_t)ipc;
  uint8_t *tcp = ip + 20;
  tcp[0] = (uint8_t)(sport >> 8);
  tcp[1] = (uint8_t)sport;
  tcp[2] = (uint8_t)(c->dport >> 8);
  tcp[3] = (uint8_t)c->dport;
  uint32_t sq = htonl(seq), ak = htonl(flags & 0x10 ? 1u : 0u);
  memcpy(tcp + 4, &sq, 4);
  memcpy(tcp + 8, &ak, 4);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  tcp[14] = 0xfa;
  tcp[15] = 0xf0; /* window 64240 */
  tcp[16] = tcp[17] = 0;
  tcp[18] = tcp[19] = 0;
  /* pseudo header: saddr, daddr, zero+proto, tcp length */
  uint32_t sum = csum_add(0, ip + 12, 8);
  sum += 6 + 20;
  sum = csum_add(sum, tcp, 20);
  uint16_t tc = csum_fold(sum);
  tcp[16] = (uint8_t)(tc >> 8);
  tcp[17] = (uint8_t)tc;
}

static uint8_t frames[MAX_BATCH][FRAME_LEN];
static struct iovec iov[MAX_BATCH];
static struct mmsghdr msgs[MAX_BATCH];
static uint64_t send_errors, send_calls, last_errno;

/* Send n frames already filled in frames[0..n); retries partial sends and ENOBUFS/EAGAIN. */
static int send_batch(int fd, int n) {
  int done = 0, spins = 0;
  while (done < n) {
    send_calls++;
    int r = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      send_errors++;
      last_errno = (uint64_t)errno;
      if ((errno == ENOBUFS || errno == EAGAIN) && ++spins < 1000) {
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
        continue;
      }
      return done; /* give the rest of this batch up */
    }
    done += r;
  }
  return done;
}

int main(int argc, char **argv) {
  struct cfg c;
  memset(&c, 0, sizeof c);
  const char *ifname = NULL;
  int have_src = 0, have_dst = 0, have_ip = 0, wait_go = 0;
  c.dport = 80;
  c.flows = 1024;
  c.src_net = 0xc6120001u; /* 198.18.0.1, RFC 2544 benchmarking range (198.18.0.0/15) */
  c.count = 1000000;
  c.duration = 2.0;
  c.batch = 64;
  static struct option opts[] = {
      {"ifname", 1, 0, 'i'}, {"src-mac", 1, 0, 's'}, {"dst-mac", 1, 0, 'd'},  {"dst-ip", 1, 0, 'D'},
      {"dport", 1, 0, 'p'},  {"mode", 1, 0, 'm'},    {"flows", 1, 0, 'f'},    {"src-net", 1, 0, 'n'},
      {"flow-offset", 1, 0, 'o'}, {"rate", 1, 0, 'r'}, {"count", 1, 0, 'c'}, {"duration", 1, 0, 't'},
      {"batch", 1, 0, 'b'},  {"wait-go", 0, 0, 'w'}, {"help", 0, 0, 'h'},     {"cycle", 1, 0, 'C'},
      {"random", 0, 0, 'R'}, {0, 0, 0, 0}};
  int o;
  struct in_addr a;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
      case 'i': ifname = optarg; break;
      case 's': if (parse_mac(optarg, c.src_mac)) usage(); have_src = 1; break;
      case 'd': if (parse_mac(optarg, c.dst_mac)) usage(); have_dst = 1; break;
      case 'D': if (!inet_aton(optarg, &a)) usage(); c.dst_ip = ntohl(a.s_addr); have_ip = 1; break;
      case 'p': c.dport = (uint16_t)atoi(optarg); break;
      case 'm':
        if (!strcmp(optarg, "syn")) c.steady = 0;
        else if (!strcmp(optarg, "steady")) c.steady = 1;
        else usage();
        break;
      case 'f': c.flows = (uint32_t)strtoul(optarg, NULL, 10); break;
      case 'n': if (!inet_aton(optarg, &a)) usage(); c.src_net = ntohl(a.s_addr); break;
      case 'o': c.offset = strtoull(optarg, NULL, 10); break;
      case 'r': c.rate = atof(optarg); break;
      case 'c': c.count = strtoull(optarg, NULL, 10); break;
      case 't': c.duration = atof(optarg); break;
      case 'b': c.batch = atoi(optarg); break;
      case 'w': wait_go = 1; break;
      case 'C': c.cycle = strtoull(optarg, NULL, 10); break;
      case 'R': c.random = 1; break;
      default: usage();
    }
  }
  if (!ifname || !have_src || !have_dst || !have_ip || c.batch < 1 || c.batch > MAX_BATCH || c.flows < 1 ||
      c.duration <= 0 || c.duration > 600 || c.count < 1)
    usage();

  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  /* protocol 0: a send-only socket, no frame is ever queued to it for reception */
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) die("socket(AF_PACKET)");
  int one = 1, sndbuf = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  struct sockaddr_ll sll;
  memset(&sll, 0, sizeof sll);
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = 0;
  sll.sll_ifindex = (int)if_nametoindex(ifname);
  if (!sll.sll_ifindex) die(ifname);
  if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
  for (int i = 0; i < MAX_BATCH; i++) {
    iov[i].iov_base = frames[i];
    iov[i].iov_len = FRAME_LEN;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }

  /* steady state: open the flows first (not measured) */
  if (c.steady) {
    for (uint32_t f = 0; f < c.flows;) {
      int n = 0;
      for (; n < 64 && f < c.flows; n++, f++) fill(frames[n], &c, c.offset + f, 0x02, 1000);
      send_batch(fd, n);
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
  }
  uint64_t warm_errors = send_errors;
  send_errors = 0;
  send_calls = 0;

  if (wait_go) {
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return 3;
  }

  uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  uint64_t t0 = now_ns(CLOCK_MONOTONIC);
  uint64_t end = t0 + (uint64_t)(c.duration * 1e9);
  uint64_t sent = 0, attempted = 0, i = 0, t = t0;
  uint32_t seq = 1001;
  while (attempted < c.count) {
    if (c.rate > 0) {
      uint64_t due = t0 + (uint64_t)((double)attempted * 1e9 / c.rate);
      if (due > t) {
        if (due >= end) break;
        struct timespec ts = {(time_t)(due / 1000000000ull), (long)(due % 1000000000ull)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
        }
      }
    }
    int n = c.batch;
    if ((uint64_t)n > c.count - attempted) n = (int)(c.count - attempted);
    for (int k = 0; k < n; k++, i++) {
      if (c.steady) {
        fill(frames[k], &c, c.offset + i % c.flows, 0x10, seq + (uint32_t)(i / c.flows));
      } else {
        /* random: a flow index over 65536 addresses x 64000 ports (fill() splits it) */
        uint64_t flow = c.random ? mix(c.offset + i) % (65536ull * PORTS_PER_ADDR)
                        : c.cycle ? c.offset + i % c.cycle
                                  : c.offset + i;
        fill(frames[k], &c, flow, 0x02, 1000);
      }
    }
    sent += (uint64_t)send_batch(fd, n);
    attempted += (uint64_t)n;
    t = now_ns(CLOCK_MONOTONIC);
    if (t >= end) break;
  }
  uint64_t t1 = now_ns(CLOCK_MONOTONIC);
  uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID);
  double el = (double)(t1 - t0) / 1e9;
  printf("{\"sent\":%llu,\"attempted\":%llu,\"elapsed_ns\":%llu,\"cpu_ns\":%llu,\"pps\":%.0f,\"send_calls\":%llu,"
         "\"send_errors\":%llu,\"last_errno\":%llu,\"warm_errors\":%llu,\"steady\":%d,\"flows\":%u}\n",
         (unsigned long long)sent, (unsigned long long)attempted, (unsigned long long)(t1 - t0), (unsigned long long)(cpu1 - cpu0),
         el > 0 ? (double)sent / el : 0.0, (unsigned long long)send_calls, (unsigned long long)send_errors,
         (unsigned long long)last_errno, (unsigned long long)warm_errors, c.steady, c.flows);
  fflush(stdout);
  close(fd);
  return 0;
}
